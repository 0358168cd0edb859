"""Selection files out: the :class:`Selection`, its writers and the manifest, each file written atomically."""

from tasksift.selection.writers import (
    atomic_path,
    write_json_atomic,
    write_parquet_atomic,
    write_selection_outputs,
)

__all__ = ["atomic_path", "write_json_atomic", "write_parquet_atomic", "write_selection_outputs"]
