"""The resource namespaces of the clients: `client.models`, `client.files`, `client.fine_tuning.jobs`,
`client.batches`, `client.responses`."""

from maas_sdk.resources.batches import AsyncBatches, AsyncBoundBatch, Batches, BoundBatch
from maas_sdk.resources.files import AsyncFiles, Files
from maas_sdk.resources.fine_tuning import (
    AsyncBoundFineTuningJob,
    AsyncFineTuning,
    AsyncFineTuningJobs,
    BoundFineTuningJob,
    FineTuning,
    FineTuningJobs,
)
from maas_sdk.resources.models import AsyncModels, Models
from maas_sdk.resources.responses import AsyncResponses, Responses

__all__ = [
    "AsyncBatches",
    "AsyncBoundBatch",
    "AsyncBoundFineTuningJob",
    "AsyncFiles",
    "AsyncFineTuning",
    "AsyncFineTuningJobs",
    "AsyncModels",
    "AsyncResponses",
    "Batches",
    "BoundBatch",
    "BoundFineTuningJob",
    "Files",
    "FineTuning",
    "FineTuningJobs",
    "Models",
    "Responses",
]
