"""`maas`: a command line for the maas API, built on the public SDK (`maas_sdk.MaaS`).

The client commands need only the SDK and the `cli` extra (typer, rich):
`pip install 'maas-sdk[cli]'`. `maas serve` and `maas bench NAME` hand over to the
reference server's own command line (`reference_server.cli`), which needs the `server` extra.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

CLI_EXTRA = "maas: the command line needs its extra: pip install 'maas-sdk[cli]'"


def main(argv: list[str] | None = None) -> int:
    """The `maas` console script. Exit codes: 0 ok, 1 API error, 2 usage error."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] in (["serve"], ["bench"]):
        # The server's own command line: it needs the server extra, not this one.
        from reference_server.cli import main as server_main

        return server_main(args)
    try:
        from maas_cli._app import run
    except ImportError as exc:
        if exc.name not in {"typer", "rich", "click"}:
            raise
        print(CLI_EXTRA, file=sys.stderr)
        return 2
    return run(args)
