"""Safe file handling for everything the pack reads and writes.

Writes go to a temporary name in the same folder and are renamed into place (complete or absent).
Reads are size-limited and decode UTF-8 with a message naming file, row and the encoding to convert from.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator

from .api import UserError

MB = 1024 * 1024
RECIPE_LIMIT = 1 * MB  # a recipe is a page of keys; 10 MB of keys is not a recipe
JSON_LIMIT = 16 * MB  # dataset_info.json, manifests, deepspeed configs
DATA_LIMIT = int(os.environ.get("LLAMA_FACTORY_EXT_MAX_DATA_MB", "4096")) * MB  # one data file


def check_size(path: os.PathLike, limit: int, what: str) -> None:
    """Refuse a file larger than ``limit`` bytes with one message naming it."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return  # missing files are reported by the caller
    if size > limit:
        raise UserError(f"{what} {path} is {size / MB:.1f} MB, over the limit of {limit / MB:.0f} MB; "
                        f"is it the file you meant?")


def guess_encoding(data: bytes) -> str:
    """A likely source encoding for bytes that are not UTF-8."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if any(0x80 <= b <= 0x9F for b in data):
        try:
            data.decode("cp1252")
            return "cp1252"
        except UnicodeDecodeError:
            pass
    return "latin-1"


def decode_error(path: os.PathLike, data: bytes, err: UnicodeDecodeError) -> UserError:
    """One message: file, row (line), the offending byte and the encoding to convert from."""
    row = data.count(b"\n", 0, err.start) + 1
    enc = guess_encoding(data)
    return UserError(
        f"file {path}: row {row} is not UTF-8 (byte 0x{data[err.start]:02x}); the file looks like {enc}. "
        f"Convert it: iconv -f {enc} -t utf-8 {path} > {path}.utf8 (then use that file)"
    )


def utf8_problem(path: os.PathLike) -> "UserError | None":
    """The decode error of the first non-UTF-8 line of a file (streamed), or None."""
    with open(path, "rb") as f:
        for row, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                head = line + f.read(1 << 20)
                enc = guess_encoding(head)
                return UserError(
                    f"file {path}: row {row} is not UTF-8 (byte 0x{line[err.start]:02x}); the file looks like {enc}. "
                    f"Convert it: iconv -f {enc} -t utf-8 {path} > {path}.utf8 (then use that file)"
                )
    return None


def read_text(path: os.PathLike, limit: int = DATA_LIMIT, what: str = "file") -> str:
    """The UTF-8 text of a file, size-limited; bad bytes give one clear UserError."""
    check_size(path, limit, what)
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8")
    except UnicodeDecodeError as err:
        raise decode_error(path, data, err) from None


def _umask() -> int:
    try:  # read without changing it (os.umask would, for a moment, for every thread)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _settle_mode(tmp: str, path: str, default: int) -> None:
    """The temporary file gets the mode a plain ``open`` would have given ``path`` (mkstemp makes it 0600)."""
    try:
        mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else default & ~_umask()
        os.chmod(tmp, mode)
    except OSError:
        pass


@contextlib.contextmanager
def atomic_write(path: os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator:
    """Open a temporary file next to ``path``; on success it replaces ``path``, on error it is removed."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, **({"encoding": encoding} if "b" not in mode else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _settle_mode(tmp, path, 0o666)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_path(path: os.PathLike):
    """Context manager giving a temporary path next to ``path`` for writers that take a file name
    (matplotlib, safetensors); renamed to ``path`` on success."""
    return _AtomicPath(os.fspath(path))


class _AtomicPath:
    def __init__(self, path: str):
        self.path = path

    def __enter__(self) -> str:
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        base, ext = os.path.splitext(os.path.basename(self.path))
        fd, self.tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{ext}", dir=folder)
        os.close(fd)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            _settle_mode(self.tmp, self.path, 0o666)
            os.replace(self.tmp, self.path)
        else:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
        return False


@contextlib.contextmanager
def atomic_dir(path: os.PathLike) -> Iterator[str]:
    """A temporary folder next to ``path``; on success it replaces ``path`` (the old folder removed
    only after the new one is complete)."""
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _settle_mode(tmp, path, 0o777)
    old = None
    if os.path.exists(path):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".old", dir=parent)
        os.rmdir(old)
        os.replace(path, old)
    os.replace(tmp, path)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def write_json(path: os.PathLike, data, indent: int = 2) -> None:
    import json

    with atomic_write(path) as f:
        json.dump(data, f, indent=indent, ensure_ascii=False)


# write faults of the file system itself (not of the input): disk full, quota, file-size limit, read-only mount
DISK_FULL = {28: "no space left on the device", 122: "disk quota exceeded", 27: "file too large for this file system or limit"}


def os_error_text(err: OSError) -> str:
    """What a file-system error means for the user, in words (disk full, read-only, a file where a folder belongs)."""
    import errno

    code = err.errno
    if code in DISK_FULL:
        return f"{DISK_FULL[code]}; free space or pick another folder"
    if code == errno.EROFS:
        return "the file system is read-only; pick a writable folder"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied; pick a folder you can write to"
    if code in (errno.ENOTDIR, errno.EEXIST):
        return "a file is where a folder belongs; pick another folder"
    if code == errno.EISDIR:
        return "a folder is where a file belongs; remove or rename it"
    return err.strerror or type(err).__name__


# how writers that are not Python's own (safetensors in Rust, torch's zip writer) report the same faults
WRITE_FAULT_TEXT = ("No space left on device", "Disk quota exceeded", "File too large", "Read-only file system",
                    "StorageFull", "FileTooLarge", "ReadOnlyFilesystem", "failed writing file")


def is_write_fault(err: BaseException) -> bool:
    """The file system refused a write (full, quota, size limit, read-only), as an OSError or a writer's error."""
    import errno

    if isinstance(err, OSError):
        return err.errno in (*DISK_FULL, errno.EROFS)
    return (isinstance(err, Exception) and not isinstance(err, UserError)
            and any(t in str(err) for t in WRITE_FAULT_TEXT))
