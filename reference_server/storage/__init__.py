"""Durable state of the fine-tuning service: uploaded files, jobs, events, checkpoints.

Metadata lives in one SQLite database under the data directory (see `layout`); file contents
and model folders live beside it on disk.
"""

from reference_server.storage.async_store import AsyncStore
from reference_server.storage.layout import DataLayout
from reference_server.storage.records import CheckpointRecord, EventRecord, FileRecord, JobRecord
from reference_server.storage.store import IdempotencyKeyReused, NewEvent, Store

__all__ = [
    "AsyncStore",
    "CheckpointRecord",
    "DataLayout",
    "EventRecord",
    "FileRecord",
    "IdempotencyKeyReused",
    "JobRecord",
    "NewEvent",
    "Store",
]
