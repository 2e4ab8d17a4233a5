"""Scene-level orchestration of the commands: remove, mask, batch."""
