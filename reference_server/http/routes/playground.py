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

from reference_server.http.errors import not_found
from reference_server.http.routing import Param, RouteTable

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

table = RouteTable("playground")


@table.route("GET", "/", "The playground's address (when MAAS_PLAYGROUND is on).", redirect="/playground")
async def root(request: Request) -> Response:
    return RedirectResponse("/playground", status_code=307)


@table.route("GET", "/playground", "The browser playground: chat, embeddings and tokenizer views.",
             raw="text/html")
async def page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS)


@table.route("GET", "/playground/{name}", "One of the playground's static assets.",
             raw=tuple(sorted({MEDIA_TYPES.get(path.suffix, "application/octet-stream") for path in ASSETS.values()})),
             params=(Param("name", "path", {"type": "string", "enum": sorted(ASSETS)}, "The asset's file name."),),
             errors=(404,))
async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    path = ASSETS.get(name)
    if path is None:
        raise not_found(f"No playground asset named '{name}'.", param="name")
    return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"), headers=HEADERS)
