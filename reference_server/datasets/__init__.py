"""Training and evaluation data: the JSONL formats checked on upload (`formats`) and their
encoding into model inputs (`encoding`), shared by serving (classification, evaluation) and
training, so neither depends on the other."""

from reference_server.datasets.formats import (
    BATCH_FORMAT,
    BATCH_OUTPUT_FORMAT,
    FORMATS,
    GENERATION_FORMATS,
    MAX_LABELS,
    BatchFileInfo,
    BatchRequest,
    DatasetError,
    DatasetInfo,
    Format,
    RecordError,
    batch_request_of,
    detect_line_format,
    iter_records,
    label_of,
    load,
    read_records,
    validate,
    validate_batch_file,
    validate_file,
)

__all__ = ["BATCH_FORMAT", "BATCH_OUTPUT_FORMAT", "FORMATS", "GENERATION_FORMATS", "MAX_LABELS", "BatchFileInfo",
           "BatchRequest", "DatasetError", "DatasetInfo", "Format", "RecordError", "batch_request_of",
           "detect_line_format", "iter_records", "label_of", "load", "read_records", "validate",
           "validate_batch_file", "validate_file"]
