"""cloudfree: SAR-assisted cloud removal for whole Sentinel-2 scenes."""

__version__ = "0.1.0"
