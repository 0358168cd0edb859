"""Atomic writes: after success or failure there is the old file or the complete new one, never a temporary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tasksift.util.io import (
    HOST,
    TMP_SUFFIX,
    atomic_path,
    atomic_write,
    move_into_place,
    stale_temp_files,
    temp_path,
    write_json_atomic,
    write_jsonl_atomic,
    write_npy_atomic,
    write_text_atomic,
)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_the_temporary_is_a_hidden_sibling_naming_host_and_process(tmp_path: Path) -> None:
    tmp = temp_path(tmp_path / "out.txt")
    assert tmp.parent == tmp_path
    assert tmp.name == f".out.txt.{HOST}.{os.getpid()}{TMP_SUFFIX}"


def test_atomic_path_renames_on_success(tmp_path: Path) -> None:
    final = tmp_path / "out.txt"
    final.write_text("old")
    with atomic_path(final) as tmp:
        assert tmp == temp_path(final)
        tmp.write_text("new")
        assert final.read_text() == "old"  # nobody sees the new content before it is complete
    assert final.read_text() == "new"
    assert names(tmp_path) == ["out.txt"]


def test_atomic_path_keeps_the_old_file_and_removes_the_temporary_on_error(tmp_path: Path) -> None:
    final = tmp_path / "out.txt"
    final.write_text("old")
    with pytest.raises(RuntimeError, match="crash"), atomic_path(final) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert final.read_text() == "old"
    assert names(tmp_path) == ["out.txt"]


def test_atomic_write_new_file_and_failure_without_an_old_one(tmp_path: Path) -> None:
    final = tmp_path / "data.bin"
    assert atomic_write(final, lambda f: f.write(b"\x00\x01")) == final
    assert final.read_bytes() == b"\x00\x01"

    def failing(f) -> None:  # noqa: ANN001 - a binary file
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(final, failing)
    assert final.read_bytes() == b"\x00\x01"
    other = tmp_path / "never.bin"
    with pytest.raises(OSError, match="disk full"):
        atomic_write(other, failing)
    assert not other.exists()
    assert names(tmp_path) == ["data.bin"]


def test_json_text_npy_and_jsonl_writers(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "m.json", {"k": np.int32(3), "v": np.arange(2), "p": tmp_path, "s": {2, 1}})
    assert json.loads((tmp_path / "m.json").read_text()) == {"k": 3, "v": [0, 1], "p": str(tmp_path), "s": [1, 2]}
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "bad.json", {"k": object()})
    assert not (tmp_path / "bad.json").exists()  # serialised before the disk is touched

    write_text_atomic(tmp_path / "t.md", "héllo\n")
    assert (tmp_path / "t.md").read_bytes() == "héllo\n".encode()

    m = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(np.load(write_npy_atomic(tmp_path / "x.npy", m)), m)

    assert write_jsonl_atomic(tmp_path / "r.jsonl", iter([{"b": 1, "a": "é"}, {}])) == 2
    assert (tmp_path / "r.jsonl").read_bytes() == '{"b": 1, "a": "é"}\n{}\n'.encode()
    assert names(tmp_path) == ["m.json", "r.jsonl", "t.md", "x.npy"]


def test_move_into_place_replaces_a_file_or_moves_a_folder(tmp_path: Path) -> None:
    (tmp_path / "staged").write_text("new")
    (tmp_path / "final").write_text("old")
    move_into_place(tmp_path / "staged", tmp_path / "final")
    assert (tmp_path / "final").read_text() == "new"
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "f").write_text("x")
    move_into_place(tmp_path / "tree", tmp_path / "unpacked")
    assert (tmp_path / "unpacked" / "f").read_text() == "x"
    assert names(tmp_path) == ["final", "unpacked"]


def test_stale_temp_files_are_those_of_dead_processes_on_this_host(tmp_path: Path) -> None:
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
    stale = [tmp_path / f".a.npy.{HOST}.{dead}.tmp", tmp_path / f"b.npy.{HOST}.{dead}.tmp"]
    kept = [tmp_path / f".c.{HOST}.{os.getppid()}.tmp",  # a live process
            tmp_path / f".d.{HOST}.{os.getpid()}.tmp",  # this process
            tmp_path / f".e.other-host.{dead}.tmp",  # another host's process: cannot be checked from here
            tmp_path / "f.tmp"]  # not one of ours
    for path in stale + kept:
        path.write_bytes(b"")
    assert sorted(stale_temp_files(tmp_path)) == sorted(stale)
