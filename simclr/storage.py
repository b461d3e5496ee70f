"""Writing files so that a failure costs nothing: atomic replacement, and a full disk recognised as such.

`atomic_write` writes to a temporary file beside the target, syncs it, renames it over the target and
syncs the directory, so that a kill, a power loss or a full disk leaves either the old file or the new
one, never a mix and never a leftover temporary file. A write that fails for lack of space is re-raised
as an OSError with errno ENOSPC (or EDQUOT) naming the target, however the writing library reported it:
`torch.save` turns the ENOSPC of its file object into a RuntimeError whose `__context__` is that OSError,
so the exception chain is searched, and the free space is looked at when the chain holds no errno.
`simclr.training.resilience.disk_full_error` turns such an OSError into the one-line report a job ends with.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})  # a full file system, or the user's quota on it
# Free bytes under which a write that failed without an errno is taken to have failed for lack of space
# (ext4 keeps 5% for root; shutil.disk_usage reports what ordinary users may still use).
NEARLY_FULL = 1 << 20


def chain(error: BaseException) -> Iterator[BaseException]:
    """`error`, then the exceptions it was raised from or while handling (`__cause__`, `__context__`)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def no_space(error: BaseException) -> OSError | None:
    """The OSError with errno ENOSPC or EDQUOT in `error`'s chain, or None."""
    return next((e for e in chain(error) if isinstance(e, OSError) and e.errno in NO_SPACE), None)


def file_being_written(error: BaseException) -> Path | None:
    """The file a failed write named: the filename of an OSError in the chain (`atomic_write` always sets it),
    else None (the caller names the run directory)."""
    for e in chain(error):
        if isinstance(e, OSError) and isinstance(e.filename, str | os.PathLike):
            return Path(e.filename)
    return None


def free_bytes(folder: Path) -> int:
    """Bytes an ordinary user may still write in `folder`'s file system (0 when it cannot be asked)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def human(size: float) -> str:
    """1536 -> '1.5 KiB'."""
    if size < 1024:
        return f"{size:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"


def fsync_dir(folder: Path) -> None:
    """Syncs a directory, so that a rename in it survives a power loss (POSIX; a no-op on Windows)."""
    if sys.platform == "win32":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP):  # file systems that cannot sync a directory
            raise
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Writes `path` through `write(binary file)`: temporary file, fsync, rename over `path`, directory fsync.

    Whatever happens, no temporary file stays behind and `path` is either untouched or complete. Lack of
    space is raised as OSError(ENOSPC or EDQUOT, ..., path) from the original error; other errors as they are.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except Exception as e:
        # Asked before the temporary file goes: with it, a full disk has (nearly) nothing left.
        full = no_space(e) or (free_bytes(path.parent) < NEARLY_FULL and isinstance(e, (OSError, RuntimeError)))
        tmp.unlink(missing_ok=True)
        if full:
            code = full.errno if isinstance(full, OSError) else errno.ENOSPC
            raise OSError(code, os.strerror(code), str(path)) from e
        raise
    except BaseException:  # KeyboardInterrupt, SystemExit: nothing partial stays either
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """`atomic_write` of UTF-8 text (results.json, status.json, config.yaml)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
