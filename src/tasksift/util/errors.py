"""Errors that reach the user as one line, never as a traceback.

Every problem with the user's input raises :class:`InputError`. The CLI turns it into a single line on stderr
and exit code 2; the Python API lets it propagate (it is a ``ValueError``).
"""

from __future__ import annotations

import errno
from pathlib import Path


class InputError(ValueError):
    """Bad input: names the file (and line, where there is one), what is wrong and what to do."""

    def __init__(self, what: str, *, path: str | Path | None = None, line: int | None = None,
                 fix: str | None = None) -> None:
        self.what = what
        self.path = str(path) if path is not None else None
        self.line = line
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        text = f"{where}{self.what}"
        if self.fix:
            text += f" ({self.fix})"
        return " ".join(text.split())


class MissingDependencyError(ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(f"{purpose} needs the '{package}' package: pip install 'tasksift[{extra}]'")


#: what to do about an operating-system error, by errno name
_OS_FIXES = {
    "ENOENT": "check the path",
    "EACCES": "choose a place you may write to, or fix its permissions",
    "EPERM": "choose a place you may write to, or fix its permissions",
    "EROFS": "the file system is read-only: choose another place (--out, --cache-dir or $TASKSIFT_CACHE)",
    "ENOSPC": "free disk space, or choose another place (--out, --cache-dir or $TASKSIFT_CACHE)",
    "EDQUOT": "free disk space, or choose another place (--out, --cache-dir or $TASKSIFT_CACHE)",
    "EISDIR": "name a file, not a directory",
    "ENOTDIR": "a part of the path is a file, not a directory",
    "EEXIST": "remove it or choose another name",
    "ENAMETOOLONG": "use a shorter path",
}


def from_os_error(err: OSError) -> InputError:
    """An operating-system error (missing file, permission, read-only or full disk...) as one user line."""
    name = errno.errorcode.get(err.errno or 0, "")
    what = err.strerror or str(err) or type(err).__name__
    return InputError(what, path=err.filename, fix=_OS_FIXES.get(name, "check the path and the disk"))
