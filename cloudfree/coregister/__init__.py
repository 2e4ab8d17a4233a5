"""Sentinel-1 onto the Sentinel-2 grid: shift estimation and shift fields."""
