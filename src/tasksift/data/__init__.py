"""Records and vectors in, selection files out.

- :func:`load_records` reads jsonl / json / parquet / csv / ``save_to_disk`` directories into a
  :class:`RecordSet` (stable ids, a text view per record, optional domains) and fetches chosen records again;
- :func:`load_vectors` / :func:`check_vectors` check vectors the user already has;
- :func:`write_selection_outputs` writes a selection's files, each atomically.
"""

from tasksift.data.records import (
    EXTENSIONS,
    FORMATS,
    RecordSet,
    compile_template,
    content_hash,
    detect_format,
    load_records,
    records_from_dicts,
)
from tasksift.data.vectors import check_vectors, load_vectors
from tasksift.data.writers import (
    atomic_path,
    write_json_atomic,
    write_parquet_atomic,
    write_selection_outputs,
)

__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "RecordSet",
    "atomic_path",
    "check_vectors",
    "compile_template",
    "content_hash",
    "detect_format",
    "load_records",
    "load_vectors",
    "records_from_dicts",
    "write_json_atomic",
    "write_parquet_atomic",
    "write_selection_outputs",
]
