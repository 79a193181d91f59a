"""Web pages cannot drive the server from the user's browser.

A page on any site can make the browser send "simple" requests (form posts, `fetch` with a
`text/plain` body) to a server on the user's machine, and through DNS rebinding it can even
read the answers. Three rules close that:

- JSON routes take only `application/json` (or a `+json` type) bodies; any other type, or
  none, is a 415. A browser cannot send JSON cross-site without a CORS preflight, which the
  server refuses unless `MAAS_CORS_ORIGINS` allows the origin. (The upload route takes
  `multipart/form-data` and says so itself; a form is not refused here, the Origin rule
  below covers it.)
- With no API keys configured (nothing else stops a browser), the `Host` must be a loopback
  name (`localhost`, `*.localhost`, `127.0.0.0/8`, `::1`) or one of `MAAS_ALLOWED_HOSTS`
  (`*` allows any); otherwise 403. A rebound DNS name fails this.
- Also with no keys, a request carrying an `Origin` that is neither such a host nor allowed
  by CORS is a 403.

The rules hold on `/v1`; health, readiness and metrics stay open to probes. With keys
configured, a browser cannot attach the key to a cross-site request, so Host and
Origin are not checked.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from reference_server.http.errors import HTTPError
from reference_server.http.middleware._scope import has_body, header

UPLOAD_PATHS = frozenset({"/v1/files"})  # multipart, checked by the route
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def is_loopback(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(netloc: str) -> str:
    """`netloc` without its port (IPv6 literals keep their brackets off)."""
    parts = urlsplit(f"//{netloc}")
    return (parts.hostname or "").lower()



def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


class CrossSiteMiddleware:
    """415 for a JSON route's body of another type; on a keyless server, 403 for a foreign Host or Origin."""

    def __init__(self, app: ASGIApp, *, keyless: bool, allowed_hosts: Iterable[str],
                 cors_origins: Iterable[str]) -> None:
        self.app = app
        self.keyless = keyless
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.cors_origins = {o.rstrip("/").lower() for o in cors_origins}

    def _host_allowed(self, host: str) -> bool:
        return "*" in self.allowed_hosts or host in self.allowed_hosts or is_loopback(host)

    def _refusal(self, scope: Scope) -> HTTPError | None:
        if not scope["path"].startswith("/v1"):
            return None  # health, readiness, metrics: nothing a page could abuse, and probes keep working
        if self.keyless:
            host = _host_name(header(scope, b"host") or "")
            if not self._host_allowed(host):
                return HTTPError(403, f"Host '{host}' is not served here: a server without API keys answers "
                                "only loopback names and MAAS_ALLOWED_HOSTS.", param="Host",
                                code="host_not_allowed")
            origin = header(scope, b"origin")
            if origin is not None and origin.rstrip("/").lower() not in self.cors_origins:
                origin_host = _host_name(urlsplit(origin).netloc) if "://" in origin else ""
                if not origin_host or not self._host_allowed(origin_host):
                    return HTTPError(403, f"Requests from the web origin '{origin}' are not allowed; list it "
                                    "in MAAS_CORS_ORIGINS to allow it.", param="Origin", code="origin_not_allowed")
        if scope["method"] in _BODY_METHODS and scope["path"].startswith("/v1/") and has_body(scope):
            media_type = _media_type(header(scope, b"content-type"))
            if scope["path"] not in UPLOAD_PATHS and not _is_json(media_type):
                return HTTPError(415, f"The request body must be JSON sent as `Content-Type: application/json`, "
                                f"not '{media_type or 'none'}'.", param="Content-Type", code="unsupported_media_type")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)
