"""Python SDK for a Model-as-a-Service NLP API.

```python
from maas_sdk import MaaS

with MaaS() as client:  # $MAAS_API_KEY, $MAAS_BASE_URL
    print(client.generate("Once upon a time", model="smollm2-135m-instruct", max_tokens=20).text)
```

`AsyncMaaS` offers the same methods to `await`. Every exception raised on purpose derives
from `MaaSError`; the wire types (`Generation`, `ChatCompletion`, ...) are re-exported here.
"""

from maas_sdk import protocol as _protocol
from maas_sdk._api import AsyncAPI, SyncAPI
from maas_sdk._client import AsyncMaaS, MaaS
from maas_sdk._core import DEFAULT_BASE_URL, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from maas_sdk._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BatchFailed,
    ConflictError,
    FineTuningJobFailed,
    InternalServerError,
    MaaSError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    RequestTooLargeError,
    UnprocessableEntityError,
    WaitTimeoutError,
)
from maas_sdk._pagination import AsyncPage, AsyncPager, BasePage, Page
from maas_sdk._response import AsyncStreamedResponse, RawResponse, StreamedResponse
from maas_sdk._response_format import ParsedResponse
from maas_sdk._scoring import Score
from maas_sdk._sse import ServerSentEvent, SSEDecoder
from maas_sdk._streaming import AsyncStream, Stream
from maas_sdk._tools import ParsedChatCompletion, ToolRunError
from maas_sdk._types import RequestOptions
from maas_sdk._version import __version__
from maas_sdk.protocol import *  # the wire types, listed in protocol.__all__
from maas_sdk.resources import AsyncBoundBatch, AsyncBoundFineTuningJob, BoundBatch, BoundFineTuningJob

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncAPI",
    "AsyncBoundBatch",
    "AsyncBoundFineTuningJob",
    "AsyncMaaS",
    "AsyncPage",
    "AsyncPager",
    "AsyncStream",
    "AsyncStreamedResponse",
    "AuthenticationError",
    "BadRequestError",
    "BasePage",
    "BatchFailed",
    "BoundBatch",
    "BoundFineTuningJob",
    "ConflictError",
    "FineTuningJobFailed",
    "InternalServerError",
    "MaaS",
    "MaaSError",
    "NotFoundError",
    "Page",
    "ParsedChatCompletion",
    "ParsedResponse",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RateLimitError",
    "RawResponse",
    "RequestOptions",
    "RequestTooLargeError",
    "SSEDecoder",
    "Score",
    "ServerSentEvent",
    "Stream",
    "StreamedResponse",
    "SyncAPI",
    "ToolRunError",
    "UnprocessableEntityError",
    "WaitTimeoutError",
    "__version__",
]
__all__ += _protocol.__all__
