"""Write one section of ``docs/results.md``, leaving the other sections as they are (shared by the benchmarks)."""

from __future__ import annotations

import re
from pathlib import Path

from tasksift.util.io import atomic_path


def replace_section(text: str, heading: str, section: str) -> str:
    """``text`` with the section under ``heading`` replaced by ``section`` (or appended when absent)."""
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        return pattern.sub(lambda _: section + "\n", text, count=1)
    base = text if text.strip() else "# Results\n"
    return base.rstrip() + "\n\n" + section


def write_section(doc: Path, heading: str, section: str) -> None:
    """Replace (or add) ``heading``'s section of ``doc``, written atomically."""
    doc.parent.mkdir(parents=True, exist_ok=True)
    current = doc.read_text(encoding="utf-8") if doc.exists() else ""
    with atomic_path(doc) as tmp:
        tmp.write_text(replace_section(current, heading, section), encoding="utf-8")
