"""ASGI middleware of the `/v1` API, outermost first in `reference_server.app`."""
