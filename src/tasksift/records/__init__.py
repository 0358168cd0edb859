"""Records and vectors in: stable ids, a text view per record, optional domains; vectors the user already has.

- :func:`load_records` reads jsonl / json / parquet / csv / ``save_to_disk`` directories into a
  :class:`RecordSet` and fetches chosen records again;
- :func:`load_vectors` / :func:`check_vectors` check vectors the user already has.
"""

from tasksift.records.records import (
    EXTENSIONS,
    FORMATS,
    RecordSet,
    compile_template,
    content_hash,
    detect_format,
    load_records,
    records_from_dicts,
)
from tasksift.records.vectors import check_vectors, load_vectors

__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "RecordSet",
    "check_vectors",
    "compile_template",
    "content_hash",
    "detect_format",
    "load_records",
    "load_vectors",
    "records_from_dicts",
]
