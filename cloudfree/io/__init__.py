"""Reading scenes: Sentinel-2 (GeoTIFF, .SAFE, per-band folders, STAC), Sentinel-1, scene
discovery, window reading and the decoded-scene cache."""
