"""Training and evaluation data: the JSONL formats checked on upload (`formats`) and their
encoding into model inputs (`encoding`), shared by serving (classification, evaluation) and
training, so neither depends on the other."""

from reference_server.datasets.formats import (
    FORMATS,
    GENERATION_FORMATS,
    MAX_LABELS,
    DatasetError,
    DatasetInfo,
    Format,
    RecordError,
    detect_line_format,
    iter_records,
    label_of,
    load,
    validate,
    validate_file,
)

__all__ = ["FORMATS", "GENERATION_FORMATS", "MAX_LABELS", "DatasetError", "DatasetInfo", "Format", "RecordError", "detect_line_format",
           "iter_records", "label_of", "load", "validate", "validate_file"]
