"""A STAC catalog of batch outputs (pystac): one item per finished scene, made from its files.

Each item has the footprint of the output in WGS84 (geometry with densified edges, bbox), the
acquisition time when the inputs' names or tags gave one (otherwise the interval from the launch
of Sentinel-2A to the processing time, since STAC needs a time), the output and the mask as
assets with roles and ``eo``/``raster`` band information, the ``proj`` grid fields that odc-stac
and stackstac load by, and the provenance as ``cloudfree:`` properties. Everything comes from the
outputs' GeoTIFF tags and structure (see ``provenance.py``), never from the run that made them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import rasterio
from pystac.extensions.classification import Classification, ClassificationExtension
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterBand, RasterExtension
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape

from cloudfree.io.sentinel2 import QUANTIFICATION, SPECTRAL
from cloudfree.mask.classify import CLASS_NAMES, NODATA, THIN
from cloudfree.output.provenance import Provenance

CATALOG_ID = "cloudfree"
CATALOG_FILE = "catalog.json"
#: Launch of Sentinel-2A (23 June 2015): no Sentinel-2 acquisition is older.
SENTINEL2_FIRST = datetime(2015, 6, 23, tzinfo=UTC)
#: Points per footprint edge when it is carried to WGS84 (as rasterio's densify_pts).
EDGE_POINTS = 21


@dataclass(frozen=True)
class SceneFiles:
    """The finished outputs of one scene: the cloud-free image and/or the mask, and the
    uncertainty of the image's filled pixels."""

    scene: str
    output: Path | None = None
    mask: Path | None = None
    uncertainty: Path | None = None

    @property
    def primary(self) -> Path:
        """The file the item's provenance and grid are read from."""
        return self.output or self.mask


def footprint(ds: rasterio.DatasetReader) -> dict:
    """The raster's bounds as a GeoJSON polygon in WGS84, edges densified before reprojecting."""
    left, bottom, right, top = ds.bounds
    edge = max(right - left, top - bottom) / (EDGE_POINTS - 1)
    polygon = box(left, bottom, right, top).segmentize(edge)
    return transform_geom(ds.crs, "EPSG:4326", mapping(polygon))


def _media_type(ds: rasterio.DatasetReader) -> str:
    cog = ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    return pystac.MediaType.COG if cog else pystac.MediaType.GEOTIFF


def _resolution(ds: rasterio.DatasetReader) -> float | None:
    """Pixel size in metres (None on a geographic grid, where it is not one number)."""
    return None if ds.crs.is_geographic else float(abs(ds.transform.a))


def _raster_bands(ds: rasterio.DatasetReader, scale: float | None = None,
                  offset: float | None = None) -> list[RasterBand]:
    nodata = ds.nodata
    if nodata is not None and np.isnan(nodata):
        nodata = "nan"
    return [RasterBand.create(nodata=nodata, data_type=dtype, spatial_resolution=_resolution(ds),
                              scale=scale, offset=offset) for dtype in ds.dtypes]


def add_image(item: pystac.Item, path: Path, provenance: Provenance) -> None:
    """The cloud-free image: Sentinel-2 bands with wavelengths; DN to reflectance by scale."""
    with rasterio.open(path) as ds:
        level = ds.tags().get("PROCESSING_LEVEL", "L1C")
        asset = pystac.Asset(str(path.absolute()), title=f"cloud-free Sentinel-2 {level}",
                             media_type=_media_type(ds), roles=["data", "reflectance"])
        item.add_asset("image", asset)
        names = ds.descriptions
        integer = np.issubdtype(np.dtype(ds.dtypes[0]), np.integer)
        scale, offset = ((1 / QUANTIFICATION, -provenance.radiometric_offset / QUANTIFICATION)
                         if integer else (None, None))
        if (ds.scales[0], ds.offsets[0]) != (1.0, 0.0):  # the scale and offset it declares
            scale, offset = ds.scales[0], ds.offsets[0]
        RasterExtension.ext(asset, add_if_missing=True).bands = _raster_bands(ds, scale, offset)
    EOExtension.ext(asset, add_if_missing=True).bands = [
        Band.create(name=name, common_name=SPECTRAL[name][0],
                    center_wavelength=SPECTRAL[name][1],
                    full_width_half_max=SPECTRAL[name][2]) if name in SPECTRAL
        else Band.create(name=name or f"band{i}") for i, name in enumerate(names, start=1)]


def add_mask(item: pystac.Item, path: Path) -> None:
    """The class mask: clear, cloud, shadow, snow (thin cloud where its tags list it),
    nodata."""
    with rasterio.open(path) as ds:
        asset = pystac.Asset(str(path.absolute()), title="cloud, shadow and snow mask",
                             media_type=_media_type(ds),
                             roles=["data", "cloud", "cloud-shadow", "snow-ice"])
        item.add_asset("mask", asset)
        RasterExtension.ext(asset, add_if_missing=True).bands = _raster_bands(ds)
        listed = ds.tags().get("CLASSES", "").split()
    classes = [Classification.create(value, name=name, nodata=value == NODATA or None)
               for value, name in CLASS_NAMES if value != THIN or f"{value}={name}" in listed]
    ClassificationExtension.ext(asset, add_if_missing=True).classes = classes


def add_uncertainty(item: pystac.Item, path: Path) -> None:
    """The expected error of each filled pixel: per band, its standard deviation in DN."""
    with rasterio.open(path) as ds:
        asset = pystac.Asset(str(path.absolute()),
                             title="standard deviation of the expected error of filled pixels",
                             media_type=_media_type(ds), roles=["data", "uncertainty"])
        item.add_asset("uncertainty", asset)
        bands = _raster_bands(ds)
        for band in bands:
            band.unit = "DN"
        RasterExtension.ext(asset, add_if_missing=True).bands = bands
        EOExtension.ext(asset, add_if_missing=True).bands = [
            Band.create(name=name or f"band{i}") for i, name in enumerate(ds.descriptions, 1)]


def _properties(p: Provenance) -> dict:
    """The provenance as item properties (``cloudfree:`` prefix; None values left out)."""
    values = {
        "version": p.version, "command": p.command, "inputs": p.inputs, "model": p.model,
        "model_sha256": p.model_sha256, "arch": p.arch, "cloud_fraction": p.cloud_fraction,
        "s1_shift_px": list(p.s1_shift_px) if p.s1_shift_px else None,
        "s1_shift_applied": p.s1_shift_applied, "references": p.references,
        "filled_pixels_by_source": p.filled_by_source,
    }
    props = {f"cloudfree:{k}": v for k, v in values.items() if v is not None}
    if p.processed is not None:
        props["created"] = p.processed.isoformat()
    return props


def scene_item(files: SceneFiles) -> pystac.Item:
    """The STAC item of one scene's outputs."""
    provenance = Provenance.of(files.primary)
    with rasterio.open(files.primary) as ds:
        geometry = footprint(ds)
        grid = {"epsg": ds.crs.to_epsg(), "shape": [ds.height, ds.width],
                "transform": list(ds.transform)[:6]}
    times = ({"datetime": provenance.acquired} if provenance.acquired else
             {"datetime": None, "start_datetime": SENTINEL2_FIRST,
              "end_datetime": provenance.processed or datetime.now(UTC)})
    item = pystac.Item(files.scene, geometry, list(shape(geometry).bounds), **times,
                       properties=_properties(provenance))
    if grid["epsg"] is not None:
        ProjectionExtension.ext(item, add_if_missing=True).apply(**grid)
    if files.output is not None:
        add_image(item, files.output, provenance)
    if files.mask is not None:
        add_mask(item, files.mask)
    if files.uncertainty is not None:
        add_uncertainty(item, files.uncertainty)
    return item


def write_catalog(folder: Path | str, scenes: list[SceneFiles], update: bool) -> Path:
    """Write (or, with ``update``, add to) the self-contained catalog in ``folder``."""
    folder = Path(folder)
    path = folder / CATALOG_FILE
    if update and path.exists():
        catalog = pystac.Catalog.from_file(str(path))
    else:
        catalog = pystac.Catalog(CATALOG_ID, "Cloud-free Sentinel-2 scenes made by cloudfree")
    for files in scenes:
        if next(catalog.get_items(files.scene), None) is not None:
            catalog.remove_item(files.scene)
        catalog.add_item(scene_item(files))
    catalog.normalize_hrefs(str(folder.absolute()))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return path
