"""Documented OpenAI parameters the server accepts without acting on them (`store`,
`metadata`, `service_tier`, ...): a client written for OpenAI keeps working, and the
`x-maas-ignored-params` response header (and a debug log line) says what had no effect."""

from __future__ import annotations

import logging

from starlette.responses import Response

from maas_sdk.protocol import RequestModel

HEADER = "x-maas-ignored-params"
logger = logging.getLogger(__name__)


def mark_ignored(response: Response, body: RequestModel) -> Response:
    ignored = body.ignored_params()
    if ignored:
        response.headers[HEADER] = ",".join(ignored)
        logger.debug("ignored parameters: %s", ", ".join(ignored))
    return response
