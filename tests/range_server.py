"""An HTTP server on 127.0.0.1 serving the files of a folder with byte-range requests
(``Range: bytes=a-b``, one range per request, as GDAL's network reader asks), logging every
request and the body bytes it sent. Python's ``http.server`` ignores ranges. A URL whose query
holds ``fail=N`` is answered 503 (Service Unavailable) its first N times, for retries; one
with ``noranges`` in its query is answered whole, as servers without byte ranges do.

It runs in a child process: a server thread inside the test's process never answered, as
rasterio holds Python's lock while GDAL opens a ``/vsicurl/`` file.
"""

from __future__ import annotations

import json
import mimetypes
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class RangeServer:
    """Serves ``root`` at :attr:`url` while open (``with RangeServer(root) as server``)."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root, self.log = Path(root), Path(log)
        self.url = ""
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> RangeServer:
        self.log.write_text("")
        self._process = subprocess.Popen([sys.executable, __file__, str(self.root),
                                          str(self.log)], stdout=subprocess.PIPE, text=True)
        self.url = self._process.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), self.url
        return self

    def __exit__(self, *exc) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)
        self._process.stdout.close()

    @property
    def requests(self) -> list[dict]:
        """Each request answered so far: method, path, range (or None), status, bytes sent."""
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    @property
    def sent(self) -> int:
        """The body bytes sent so far."""
        return sum(r["sent"] for r in self.requests)

    def reset(self) -> None:
        """Forget the requests so far."""
        self.log.write_text("")


def _handler(root: Path, log: Path) -> type[BaseHTTPRequestHandler]:
    failed: dict[str, int] = {}  # the 503s answered so far, by URL
    lock = threading.Lock()

    def failing(url: str) -> bool:
        """Whether ``url`` (asking for ``fail=N``) is to be answered 503 this time."""
        wanted = int(parse_qs(urlparse(url).query).get("fail", ["0"])[0])
        with lock:
            failed[url] = failed.get(url, 0) + 1
            return failed[url] <= wanted

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as GDAL's reader expects

        def do_HEAD(self) -> None:  # noqa: N802 (http.server's names)
            self._serve(body=False)

        def do_GET(self) -> None:  # noqa: N802
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            wanted = self.headers.get("Range")
            file = root / unquote(urlparse(self.path).path).lstrip("/")
            inside = file.is_file() and root.resolve() in file.resolve().parents
            data = file.read_bytes() if inside else b""
            start, end = 0, len(data) - 1
            match = None if "noranges" in self.path else _RANGE.match(wanted or "")
            if not inside:
                status = 404
            elif failing(self.path):
                status = 503
            elif match and match.group(1):
                start, end, status = int(match.group(1)), min(int(match.group(2) or end), end), 206
            elif match and match.group(2):  # the last N bytes
                start, status = max(0, len(data) - int(match.group(2))), 206
            else:
                status = 200
            if status == 206 and start > end:
                status = 416
            sent = end - start + 1 if status in (200, 206) and body else 0
            with log.open("a") as f:
                f.write(json.dumps({"method": self.command, "path": self.path, "range": wanted,
                                    "status": status, "sent": sent}) + "\n")
            if status not in (200, 206):
                self.send_error(status)
                return
            self.send_response(status)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.send_header("Content-Type", mimetypes.guess_type(file.name)[0]
                             or "application/octet-stream")
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if body:
                self.wfile.write(data[start:end + 1])

        def log_message(self, *args) -> None:  # the log file says it all
            pass

    return Handler


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(Path(sys.argv[1]), Path(sys.argv[2])))
    server.daemon_threads = True
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
