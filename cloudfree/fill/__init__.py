"""Filling one date: median and local fills, restoration of thin cloud, uncertainty."""
