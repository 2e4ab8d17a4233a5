"""Inputs over HTTP(S): a STAC item's JSON fetched whole (urllib, with a timeout and retries),
rasters (Cloud Optimized GeoTIFFs above all) read by GDAL's network layer (``/vsicurl/``) in
byte ranges, the blocks each window needs, never downloaded whole.

GDAL's settings for a URL travel in the name the file is opened by (``/vsicurl?...&url=``),
not in GDAL's configuration, which is one for the whole process: the name carries them to
every thread that reopens the file, and local files keep finding their side files
(``.aux.xml``, ``.msk``). They are ``empty_dir`` (no listing of the server's folder, no probes
for side files) and, unless the user set GDAL_HTTP_MAX_RETRY or GDAL_HTTP_RETRY_DELAY, the
retries below; the JSON fetch takes the same numbers, and GDAL_HTTP_TIMEOUT. Anything else
(credentials, headers, proxies) is the user's GDAL configuration, as for any GDAL tool.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin

from rasterio.env import get_gdal_config

from cloudfree import __version__
from cloudfree.core.errors import CloudfreeError
from cloudfree.core.paths import Url, as_url

#: Retries of a request that failed in a way that may pass (``_passing``) and the wait before
#: the first (seconds; doubled for each next one), unless GDAL's settings say.
RETRIES, RETRY_DELAY = 3, 1.0
#: Seconds a JSON fetch waits for an answer, unless GDAL_HTTP_TIMEOUT says.
TIMEOUT = 30.0
#: HTTP statuses worth a retry (as GDAL's own default).
RETRY_CODES = (429, 500, 502, 503, 504)
#: URL endings read as rasters; any other URL is taken for a STAC item.
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")
#: Most bytes a STAC item's JSON is read to (an item is a few kB; more is no item).
MAX_ITEM_BYTES = 16 * 2**20
#: How the JSON fetch names itself to servers (some refuse Python's default).
USER_AGENT = f"cloudfree/{__version__}"
#: What GDAL's network layer is asked for in a file name.
_GDAL_PREFIX = "/vsicurl?"


def _setting(name: str) -> str | None:
    """A GDAL setting the user gave, in the environment or GDAL's configuration, else None."""
    value = os.environ.get(name) or get_gdal_config(name)
    return None if value in (None, "") else str(value)


def _number(name: str, default: float) -> float:
    """A numeric GDAL setting, else ``default`` (also for text that is no number)."""
    try:
        return float(_setting(name) or default)
    except ValueError:
        return default


def names_raster(url: Url) -> bool:
    """Whether a URL names a raster (by its ending); otherwise it is taken for a STAC item."""
    return url.suffix.lower() in RASTER_SUFFIXES


def gdal_path(url: Url) -> str:
    """The name GDAL opens ``url`` by, with the settings above in it."""
    options = {"empty_dir": "yes"}
    if _setting("GDAL_HTTP_MAX_RETRY") is None:
        options["max_retry"] = str(RETRIES)
    if _setting("GDAL_HTTP_RETRY_DELAY") is None:
        options["retry_delay"] = f"{RETRY_DELAY:g}"
    return _GDAL_PREFIX + urlencode({**options, "url": url})


def shown(name: str) -> str:
    """A file's name as messages show it: the URL of a :func:`gdal_path`, else the name."""
    if name.startswith(_GDAL_PREFIX):
        return parse_qs(name[len(_GDAL_PREFIX):]).get("url", [name])[0]
    return name


def base_name(name: str) -> str:
    """The last piece of a file's GDAL name or URL (``B02.tif``), as messages name a file."""
    full = shown(name)
    url = as_url(full)
    return url.name if url is not None else Path(full).name


def resolve(href: str, item: Url) -> Url:
    """An asset's URL: ``href`` itself, or taken relative to the item's URL."""
    return Url(urljoin(item, href))


def _problem(exc: Exception, timeout: float) -> str:
    """What went wrong with a request, and what to check, in words."""
    if isinstance(exc, urllib.error.HTTPError):
        advice = {401: "give credentials in GDAL's settings (GDAL_HTTP_AUTH, "
                       "GDAL_HTTP_HEADERS...)",
                  403: "check your credentials (a signed URL may have expired)",
                  404: "check the URL"}.get(exc.code, "check the URL and the server")
        return f"the server answers HTTP {exc.code} {exc.reason}; {advice}"
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused; check the host and port, and that the server is up"
    if isinstance(reason, socket.gaierror):
        return "host not found; check the host name and your network"
    if isinstance(reason, TimeoutError):
        return f"no answer in {timeout:g} s; check your network (GDAL_HTTP_TIMEOUT sets the wait)"
    if isinstance(reason, ssl.SSLError):
        return f"TLS error ({reason}); check the certificates (CURL_CA_BUNDLE)"
    return f"cannot be fetched ({reason}); check the URL and your network"


def _passing(exc: Exception) -> bool:
    """Whether a request's failure may pass if tried again: no answer in time, a connection
    broken off, HTTP 429 or 5xx (not a refused connection or an unknown host, as GDAL)."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in RETRY_CODES
    reason = getattr(exc, "reason", exc)
    return isinstance(reason, TimeoutError | ConnectionResetError | ConnectionAbortedError)


def _fetch(url: Url, headers: dict[str, str], retries: int, limit: int
           ) -> tuple[int, str, bytes]:
    """The HTTP status, content type and body (its first ``limit`` bytes) at ``url``, with up
    to ``retries`` retries of failures that may pass."""
    timeout = _number("GDAL_HTTP_TIMEOUT", TIMEOUT)
    delay = _number("GDAL_HTTP_RETRY_DELAY", RETRY_DELAY)
    attempt = 0
    while True:
        try:
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **headers})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.headers.get_content_type(), \
                    response.read(limit)
        except (urllib.error.URLError, OSError) as exc:
            if not _passing(exc) or attempt == retries:
                raise CloudfreeError(f"{url}: {_problem(exc, timeout)}") from None
        time.sleep(delay * 2**attempt)
        attempt += 1


def fetch_json(url: Url, what: str) -> object:
    """The JSON document at ``url`` (``what``, e.g. "Sentinel-2 input", names it in errors)."""
    retries = int(_number("GDAL_HTTP_MAX_RETRY", RETRIES))
    try:
        _, kind, body = _fetch(url, {"Accept": "application/geo+json, application/json"},
                               retries, MAX_ITEM_BYTES + 1)
    except CloudfreeError as exc:
        raise CloudfreeError(f"{what} {exc}") from None
    if kind.startswith("image/") or len(body) > MAX_ITEM_BYTES:
        raise CloudfreeError(f"{what} {url} is {kind}, not a STAC item; a URL is read as a "
                             f"raster when its path ends in {', '.join(RASTER_SUFFIXES)}")
    try:
        return json.loads(body)
    except ValueError:
        start = body[:30].decode("utf-8", "replace").split("\n")[0]
        raise CloudfreeError(f"{what} {url} is not JSON (it begins {start!r}); give the URL of "
                             "a STAC item, or of a GeoTIFF ending in .tif") from None


def open_error(url: Url, what: str, exc: Exception) -> CloudfreeError:
    """The one-line error for a URL GDAL could not open: why the server did not give it (or
    not by byte ranges), when one request for its first byte says, else GDAL's words."""
    try:
        status = _fetch(url, {"Range": "bytes=0-0"}, retries=0, limit=1)[0]
    except CloudfreeError as failed:
        return CloudfreeError(f"{what} {failed}")
    if status == 200:  # the whole file, not the range asked for
        return CloudfreeError(f"{what} {url}: the server does not answer byte ranges, which "
                              "reading without a download needs; download the file and give "
                              "its path")
    return CloudfreeError(f"{what} {url} is not a raster GDAL can read ({exc}); give the URL "
                          "of a GeoTIFF (a COG reads fastest) or of a STAC item")

