"""The maas reference server: the maas API served with real torch + transformers inference.

`create_app()` (in `reference_server.app`) builds the ASGI app; nothing heavy happens
at import time, models load in the app's lifespan.
"""

from reference_server.app import create_app

__all__ = ["create_app"]
