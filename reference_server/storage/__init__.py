"""Durable state of files, fine-tuning (jobs, events, checkpoints) and batches.

Metadata lives in one database: an SQLite file under the data directory (see `layout`), or a
PostgreSQL server the replicas of a cluster share (see `database`); file contents and model
folders live in the data directory on disk.
"""

from reference_server.storage.async_store import AsyncStore
from reference_server.storage.layout import DataLayout
from reference_server.storage.records import (
    BatchRecord,
    CheckpointRecord,
    EventRecord,
    FileRecord,
    JobRecord,
    ResponseRecord,
)
from reference_server.storage.store import IdempotencyKeyReused, NewEvent, Store

__all__ = [
    "AsyncStore",
    "BatchRecord",
    "CheckpointRecord",
    "DataLayout",
    "EventRecord",
    "FileRecord",
    "IdempotencyKeyReused",
    "JobRecord",
    "NewEvent",
    "ResponseRecord",
    "Store",
]
