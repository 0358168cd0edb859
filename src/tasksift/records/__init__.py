"""Records and vectors in: stable ids, a text view per record, optional domains; vectors the user already has.

- :func:`load_records` reads jsonl (also gzip / zstd) / json / parquet / csv files, globs and lists of them,
  ``save_to_disk`` directories, folders laid out like hub datasets, ``hf://`` hub datasets and in-memory
  ``Dataset`` / ``IterableDataset`` / ``DataFrame`` into a :class:`RecordSet` and fetches chosen records again
  (one module per format, chosen in :mod:`.formats`; which files, in :mod:`.sources`);
- a text view is a field, a template or a conversation (:mod:`.chat`);
- a large input keeps its texts in the file: ``RecordSet.texts`` is then a :class:`TextColumn` (:mod:`.column`);
- :func:`domain_index` numbers the domain labels of records;
- :func:`load_vectors` / :func:`check_vectors` check vectors the user already has.
"""

from tasksift.records.column import TextColumn
from tasksift.records.domains import domain_index
from tasksift.records.files import file_sha256, hf_dir_sha256
from tasksift.records.load import EXTENSIONS, FORMATS, detect_format, load_records, records_from_dicts
from tasksift.records.memory import kind_of as dataset_kind
from tasksift.records.recordset import RecordSet
from tasksift.records.sources import source_sha256
from tasksift.records.vectors import check_vectors, load_vectors
from tasksift.records.view import compile_template, content_hash

__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "RecordSet",
    "TextColumn",
    "check_vectors",
    "compile_template",
    "content_hash",
    "dataset_kind",
    "detect_format",
    "domain_index",
    "file_sha256",
    "hf_dir_sha256",
    "load_records",
    "load_vectors",
    "records_from_dicts",
    "source_sha256",
]
