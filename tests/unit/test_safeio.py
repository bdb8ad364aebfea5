"""safeio: atomic writes (complete or absent, never a temporary file left), size-limited reads, one message for a
file that is not UTF-8."""

from __future__ import annotations

import json
import os

import pytest

from llama_factory_ext.api import UserError
from llama_factory_ext.safeio import atomic_dir, atomic_path, atomic_write, read_text, utf8_problem, write_json


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    from llama_factory_ext.safeio import atomic_write

    path = tmp_path / "predictions.jsonl"
    path.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["predictions.jsonl"]
    with atomic_write(path) as f:
        f.write("new\n")
    assert path.read_text() == "new\n" and os.listdir(tmp_path) == ["predictions.jsonl"]


def test_atomic_write_creates_folders_and_writes_bytes(tmp_path):
    path = tmp_path / "a" / "b" / "blob.bin"
    with atomic_write(path, "wb") as f:
        f.write(b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01" and os.listdir(path.parent) == ["blob.bin"]


def test_atomic_path_renames_on_success_and_removes_on_failure(tmp_path):
    path = tmp_path / "confusion_matrix.png"
    with atomic_path(path) as tmp:
        assert tmp != str(path) and tmp.endswith(".png") and os.path.dirname(tmp) == str(tmp_path)
        with open(tmp, "w") as f:
            f.write("png")
    assert path.read_text() == "png"
    with pytest.raises(ValueError):
        with atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write("broken")
            raise ValueError("plot failed")
    assert path.read_text() == "png" and os.listdir(tmp_path) == ["confusion_matrix.png"]


def test_atomic_dir_replaces_a_folder_only_when_the_new_one_is_complete(tmp_path):
    target = tmp_path / "export"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            with open(os.path.join(tmp, "half.txt"), "w") as f:
                f.write("half")
            raise RuntimeError("killed")
    assert sorted(os.listdir(target)) == ["old.txt"] and os.listdir(tmp_path) == ["export"]
    with atomic_dir(target) as tmp:
        with open(os.path.join(tmp, "new.txt"), "w") as f:
            f.write("new")
    assert sorted(os.listdir(target)) == ["new.txt"] and os.listdir(tmp_path) == ["export"]


def test_write_json_keeps_non_ascii(tmp_path):
    path = tmp_path / "label_map.json"
    write_json(path, {"labels": ["café", "crème"]})
    assert "café" in path.read_text(encoding="utf-8") and json.loads(path.read_text())["labels"][1] == "crème"


def test_read_text_refuses_an_oversized_file_naming_it(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("x" * 3000)
    assert read_text(path, limit=3000, what="recipe") == "x" * 3000
    with pytest.raises(UserError) as err:
        read_text(path, limit=2048, what="recipe")
    assert f"recipe {path} is" in err.value.render() and "over the limit" in err.value.render()


def test_not_utf8_names_file_row_byte_and_encoding(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes('{"text": "ok"}\n{"text": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(UserError) as err:
        read_text(path)
    msg = err.value.render()
    assert f"file {path}: row 2 is not UTF-8 (byte 0xe9)" in msg and "iconv -f latin-1 -t utf-8" in msg
    streamed = utf8_problem(path)
    assert streamed is not None and streamed.problems == err.value.problems
    path.write_bytes("\ufeff{\"text\": \"café\"}\n".encode("utf-8"))
    assert read_text(path) == '{"text": "café"}\n' and utf8_problem(path) is None  # a BOM is fine


def test_write_faults_are_told_apart_from_other_errors():
    import errno

    from llama_factory_ext.api import UserError
    from llama_factory_ext.safeio import is_write_fault, os_error_text

    assert is_write_fault(OSError(errno.ENOSPC, "No space left on device"))
    assert is_write_fault(OSError(errno.EROFS, "Read-only file system"))
    assert is_write_fault(RuntimeError("Error while serializing: I/O error: File too large (os error 27)"))
    assert not is_write_fault(FileNotFoundError(errno.ENOENT, "No such file"))
    assert not is_write_fault(UserError("key `x`: No space left on device in the recipe"))
    assert not is_write_fault(KeyboardInterrupt())
    assert os_error_text(OSError(errno.ENOSPC, "x")) == "no space left on the device; free space or pick another folder"
    assert os_error_text(NotADirectoryError(errno.ENOTDIR, "x")).startswith("a file is where a folder belongs")


def test_atomic_writes_get_the_mode_a_plain_open_gives(tmp_path):
    import os

    from llama_factory_ext.safeio import atomic_dir, atomic_path, atomic_write

    mask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "a.json") as f:
            f.write("{}")
        with atomic_path(tmp_path / "b.png") as p:
            open(p, "w").close()
        with atomic_dir(tmp_path / "out") as d:
            open(os.path.join(d, "x"), "w").close()
        (tmp_path / "kept.txt").write_text("old")
        os.chmod(tmp_path / "kept.txt", 0o640)
        with atomic_write(tmp_path / "kept.txt") as f:
            f.write("new")
    finally:
        os.umask(mask)
    assert oct((tmp_path / "a.json").stat().st_mode & 0o777) == oct(0o644)
    assert oct((tmp_path / "b.png").stat().st_mode & 0o777) == oct(0o644)
    assert oct((tmp_path / "out").stat().st_mode & 0o777) == oct(0o755)
    assert oct((tmp_path / "kept.txt").stat().st_mode & 0o777) == oct(0o640)  # an existing file keeps its mode
