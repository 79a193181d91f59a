"""The maas reference server: the maas API served with real torch + transformers inference.

`create_app()` (in `reference_server.app`) builds the ASGI app; nothing heavy happens
at import time, models load in the app's lifespan. It is imported on first use, so that
`reference_server.cli` loads without the server extra and can say how to install it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reference_server.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from reference_server.app import create_app

        return create_app
    raise AttributeError(f"module 'reference_server' has no attribute {name!r}")
