"""Writing results: GeoTIFF profiles, atomic outputs, COG, overviews, provenance, previews
and STAC."""
