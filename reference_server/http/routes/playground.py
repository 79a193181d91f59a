"""`GET /playground`: a single page to try the API from a browser (and `GET /` leads to it).

The page and its assets are static files (no build step, nothing fetched from elsewhere),
served open like `/health`; the page's own calls go to `/v1` with the API key typed into
it, so the key rules are the API's. Every asset is sent with a Content-Security-Policy that
lets the page talk to this server only. `MAAS_PLAYGROUND=false` leaves these routes out.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from reference_server.http.errors import APIError

STATIC = Path(__file__).resolve().parents[1] / "static" / "playground"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}
# The assets by name, read once: a request can only ever name one of these files.
ASSETS = {path.name: path for path in STATIC.iterdir() if path.is_file() and path.name != "index.html"}
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


async def root(request: Request) -> Response:
    return RedirectResponse("/playground", status_code=307)


async def page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS)


async def asset(request: Request) -> Response:
    path = ASSETS.get(request.path_params["name"])
    if path is None:
        raise APIError(404, f"No playground asset named '{request.path_params['name']}'.")
    return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"), headers=HEADERS)


routes = [
    Route("/", root, methods=["GET"]),
    Route("/playground", page, methods=["GET"]),
    Route("/playground/{name}", asset, methods=["GET"]),
]
