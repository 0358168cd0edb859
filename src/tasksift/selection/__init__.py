"""Selection files out: the :class:`Selection`, its writers and the manifest, each file written atomically."""

from tasksift.selection.selection import Selection
from tasksift.selection.writers import write_parquet_atomic, write_selection_outputs

__all__ = ["Selection", "write_parquet_atomic", "write_selection_outputs"]
