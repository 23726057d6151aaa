"""Writes that survive a crash: fsync, atomic replacement of files and folders, a writer lock.

A process killed at any instruction (``kill -9``) leaves what it wrote in the page cache;
a machine that loses power loses what was not fsynced. A bundle is staged in a hidden
folder, every staged file and folder is fsynced, and the folder is swapped into place in
one step (``renameat2(RENAME_EXCHANGE)`` on Linux), so a reader sees the old bundle or
the new one, never a mix. One writer at a time holds the lock of an output path.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from tinyllm.errors import BundleError, BundleLockedError

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk (a no-op cost for a file already on disk)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (new names, renames) to disk, where the system allows it."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some file systems refuse fsync on folders
            os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file under ``root``, then every folder, the deepest first."""
    folders = [root]
    for path in sorted(root.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            folders.append(path)
        elif path.is_file():
            fsync_file(path)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(folder)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file so that a crash leaves the old file or the new one, never a part."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def exchange_dirs(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step; False where the system cannot.

    Linux has ``renameat2(RENAME_EXCHANGE)`` (glibc 2.28, most local file systems); other
    systems, and file systems without it, get False and the caller falls back to two
    renames.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV, errno.EPERM):
        return False
    raise OSError(err, f"cannot swap {a} and {b}: {os.strerror(err)}")


def stale_folders(out: Path, kind: str) -> list[Path]:
    """Staging (``.tmp-``) or set-aside (``.old-``) folders of writes to ``out``."""
    if not out.parent.is_dir():
        return []
    prefix = f".{out.name}{kind}"
    return sorted(p for p in out.parent.iterdir() if p.name.startswith(prefix) and p.is_dir())


def recover_folder(out: Path) -> None:
    """Clean up after killed writes of the folder ``out``; call it holding out's lock.

    Puts back a previous version that an overwrite without atomic swap had moved aside
    (``.NAME.old-*/bundle``) when it was killed before the new one took its place, then
    removes staging folders (``.NAME.tmp-*``): no live writer owns them, since the caller
    holds the lock.
    """
    for old in stale_folders(out, ".old-"):
        kept = old / "bundle"
        if not out.exists() and kept.is_dir():
            os.replace(kept, out)
            fsync_dir(out.parent)
        shutil.rmtree(old, ignore_errors=True)
    for tmp in stale_folders(out, ".tmp-"):
        shutil.rmtree(tmp, ignore_errors=True)


def kept_hint(out: Path) -> str:
    """For a missing ``out``: where an interrupted overwrite left its previous version."""
    for old in stale_folders(out, ".old-"):
        if (old / "bundle").is_dir():
            return (
                f"; an overwrite of it was interrupted and the previous version is at "
                f"{old / 'bundle'}: move it back, or re-run the write (it restores it first)"
            )
    return ""


class WriterLock:
    """An exclusive lock on an output path, held while one process writes it.

    The lock is ``flock`` on a hidden file beside the output (``.NAME.lock``), so the
    system releases it when its holder exits, even by ``kill -9``. A second writer fails
    at once with :class:`BundleLockedError` instead of waiting. The holder removes the
    file when it is done; one left by a killed writer is taken over by the next.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = out.parent / f".{out.name}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`BundleLockedError` naming the holder."""
        try:
            import fcntl
        except ImportError:  # no flock (Windows): one writer is the caller's duty
            return
        while self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise BundleLockedError(
                    f"{self.out} is being written by another process (pid {holder}); wait "
                    "for it to finish or write to another path"
                ) from None
            except OSError as e:
                os.close(fd)
                raise BundleError(f"cannot lock {self.path} ({e}); check its folder") from e
            if self._still_linked(fd):
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                self._fd = fd
            else:  # its holder removed the file as we opened it: lock the new one
                os.close(fd)

    def _still_linked(self, fd: int) -> bool:
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)

    def release(self) -> None:
        """Remove the lock file and let the next writer in."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # before the unlock: a waiter re-checks the inode
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
