"""Filling from other dates: references, their statistics, the temporal mask, fits, agreement,
similar pixels, the target's residual and the dates' fill."""
