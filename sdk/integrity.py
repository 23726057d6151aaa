"""File integrity: the sha256 of bundle files, remembered by file identity so reloads are fast.

Hashing a 500 MB engine on every load costs seconds; most loads read files that have not
changed since the last one. :class:`HashCache` remembers each digest under the file's
identity ``(device, inode, size, mtime_ns, ctime_ns)``. Any write to a file changes its
ctime (which, unlike mtime, cannot be set back by a program), and replacing it changes
its inode, so a corrupted file of the same size misses the cache and is hashed again.

The cache is one small JSON file, ``$TINYLLM_CACHE/file-hashes.json``
(``TINYLLM_HASH_CACHE`` names another file, or ``off`` disables it). It is only trusted
when it is a regular file owned by the current user and writable by no one else; it is
written atomically (temporary file, then rename), and holds at most :data:`MAX_ENTRIES`
digests (least recently used dropped first). A lost update between two processes only
costs a re-hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

CACHE_FILE = "file-hashes.json"
MAX_ENTRIES = 4096
# A file changed within this many seconds of its hash is not remembered: a second write
# inside one tick of the file system's clock would leave its timestamps unchanged (the
# "racy" case git's index also guards against).
RACY_S = 2.0
_CHUNK = 8 * 1024 * 1024
_VERSION = 1


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def identity(st: os.stat_result) -> str:
    """The cache key of a file: what changes whenever its bytes may have changed."""
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def cache_path() -> Path | None:
    """Where digests are remembered (None: the cache is off)."""
    chosen = os.environ.get("TINYLLM_HASH_CACHE", "")
    if chosen.lower() in ("off", "0", "none"):
        return None
    if chosen:
        return Path(chosen)
    from tinyllm.cache import cache_dir

    return cache_dir() / CACHE_FILE


class HashCache:
    """Digests of files by identity, loaded from and saved to one JSON file.

    Args:
        path: the cache file (None: remember nothing, hash every time).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, dict[str, object]] = {}
        self.trusted = path is not None
        self.changed = False
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return
        except OSError:  # a symlink, a folder, unreadable: never trust or overwrite it
            self.trusted = False
            return
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not _owned_privately(st):
                self.trusted = False
                return
            raw = f.read()
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return  # a damaged cache is rebuilt
        if isinstance(data, dict) and data.get("version") == _VERSION:
            entries = data.get("entries")
            if isinstance(entries, dict):
                self.entries = {
                    k: v
                    for k, v in entries.items()
                    if isinstance(v, dict) and isinstance(v.get("sha256"), str)
                }

    def sha256(self, path: Path) -> str:
        """The file's sha256: remembered if its identity is unchanged, else computed."""
        before = os.stat(path)
        key = identity(before)
        entry = self.entries.get(key) if self.trusted else None
        if entry is not None:
            now = int(time.time())
            if now - _used(entry) > 3600:  # refreshed hourly, so a warm load rarely writes
                entry["used"] = now
                self.changed = True
            return str(entry["sha256"])
        digest = file_sha256(path)
        after = os.stat(path)
        newest = max(after.st_mtime_ns, after.st_ctime_ns)
        settled = time.time_ns() - newest >= RACY_S * 1e9
        if self.trusted and identity(after) == key and settled:
            self.entries[key] = {"sha256": digest, "used": int(time.time())}
            self.changed = True
        return digest

    def save(self) -> None:
        """Write the cache back (atomically), keeping the most recently used entries."""
        if not (self.trusted and self.changed and self.path is not None):
            return
        keep = sorted(self.entries.items(), key=lambda kv: _used(kv[1]), reverse=True)
        data = {"version": _VERSION, "entries": dict(keep[:MAX_ENTRIES])}
        # A read-only or full disk only costs the next load a re-hash.
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(data, f, separators=(",", ":"))
                os.replace(tmp, self.path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        self.changed = False


def sha256_files(paths: Iterable[Path]) -> dict[Path, str]:
    """sha256 of each file, through the hash cache (loaded and saved once)."""
    cache = HashCache(cache_path())
    try:
        return {p: cache.sha256(p) for p in paths}
    finally:
        cache.save()


def _owned_privately(st: os.stat_result) -> bool:
    """A regular file of this user that no one else may write."""
    if not stat.S_ISREG(st.st_mode):
        return False
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return False
    return not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _used(entry: dict[str, object]) -> int:
    used = entry.get("used")
    return used if isinstance(used, int) else 0
