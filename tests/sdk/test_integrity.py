"""The hash cache: digests remembered by file identity, never trusted when they could lie."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tinyllm import integrity
from tinyllm.bundle import Bundle
from tinyllm.errors import BundleError, ConfigError
from tinyllm.integrity import HashCache, identity, sha256_files


@pytest.fixture()
def cache_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache file; files count as settled at once (no racy window)."""
    path = tmp_path / "cache" / "hashes.json"
    monkeypatch.setenv("TINYLLM_HASH_CACHE", str(path))
    monkeypatch.setattr(integrity, "RACY_S", 0.0)
    return path


@pytest.fixture()
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file actually read for hashing, in order."""
    calls: list[Path] = []
    real = integrity.file_sha256

    def spy(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(integrity, "file_sha256", spy)
    return calls


def test_a_digest_is_remembered_until_the_file_changes(
    tmp_path: Path, cache_file: Path, hashed: list[Path]
) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(b"a" * 1000)
    first = sha256_files([data])[data]
    assert sha256_files([data])[data] == first and hashed == [data]  # second: from the cache
    assert cache_file.stat().st_mode & 0o077 == 0  # private
    data.write_bytes(b"b" * 1000)  # same size, same inode: the ctime moved
    assert sha256_files([data])[data] != first and hashed == [data, data]


def test_a_same_size_corruption_is_caught_after_a_warm_open(
    bundle_copy: Path, cache_file: Path, hashed: list[Path]
) -> None:
    Bundle.open(bundle_copy)
    cold = len(hashed)
    Bundle.open(bundle_copy)
    assert cold > 0 and len(hashed) == cold  # warm: nothing re-read
    tok = bundle_copy / "tokenizer" / "tokenizer.json"
    data = bytearray(tok.read_bytes())
    data[10] ^= 1
    tok.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"tokenizer\.json: sha256 does not match"):
        Bundle.open(bundle_copy)
    Bundle.open(bundle_copy, verify="size")  # sizes only, when asked for
    with pytest.raises(ConfigError, match="verify must be 'sha256' or 'size'"):
        Bundle.open(bundle_copy, verify="md5")  # type: ignore[arg-type]


def test_a_file_just_written_is_not_remembered(
    tmp_path: Path, cache_file: Path, hashed: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(integrity, "RACY_S", 3600.0)
    data = tmp_path / "fresh.bin"
    data.write_bytes(b"x" * 10)
    sha256_files([data])
    sha256_files([data])
    assert hashed == [data, data] and not cache_file.exists()


def _poison(cache_file: Path, target: Path, digest: str) -> None:
    """A cache that claims ``target`` (as it is now) has ``digest``."""
    key = identity(os.stat(target))
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    entries = {key: {"sha256": digest, "used": 0}}
    cache_file.write_text(json.dumps({"version": 1, "entries": entries}))


def test_a_cache_others_may_write_is_not_trusted(bundle_copy: Path, cache_file: Path) -> None:
    tok = bundle_copy / "tokenizer" / "tokenizer.json"
    listed = Bundle.open(bundle_copy, verify="size").manifest.files["tokenizer/tokenizer.json"]
    data = bytearray(tok.read_bytes())
    data[10] ^= 1
    tok.write_bytes(bytes(data))
    _poison(cache_file, tok, listed.sha256)
    cache_file.chmod(0o600)
    Bundle.open(bundle_copy)  # a private cache is trusted: that is the threat model
    cache_file.chmod(0o666)
    with pytest.raises(BundleError, match="sha256 does not match"):
        Bundle.open(bundle_copy)
    cache_file.unlink()
    elsewhere = cache_file.with_name("real.json")
    _poison(elsewhere, tok, listed.sha256)
    elsewhere.chmod(0o600)
    cache_file.symlink_to(elsewhere)
    with pytest.raises(BundleError, match="sha256 does not match"):
        Bundle.open(bundle_copy)  # a symlinked cache is not followed either
    assert json.loads(elsewhere.read_text())["entries"]  # and not overwritten


def test_damaged_disabled_and_bounded_caches(
    tmp_path: Path, cache_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = []
    for i in range(3):
        files.append(tmp_path / f"f{i}")
        files[-1].write_bytes(bytes([i]) * 100)
    cache_file.parent.mkdir(parents=True)
    cache_file.write_bytes(b"\xff not json")
    monkeypatch.setattr(integrity, "MAX_ENTRIES", 2)
    digests = sha256_files(files)
    assert len(set(digests.values())) == 3
    assert len(json.loads(cache_file.read_text())["entries"]) == 2  # rebuilt, bounded
    monkeypatch.setenv("TINYLLM_HASH_CACHE", "off")
    assert integrity.cache_path() is None
    cache = HashCache(None)
    assert cache.sha256(files[0]) == digests[files[0]] and not cache.entries


def test_a_symlink_leading_outside_the_bundle_is_rejected(
    bundle_copy: Path, tmp_path: Path
) -> None:
    tok = bundle_copy / "tokenizer" / "tokenizer.json"
    outside = tmp_path / "outside.json"
    outside.write_bytes(tok.read_bytes())
    tok.unlink()
    tok.symlink_to(outside)  # same bytes, same size, same hash: still not the bundle's own
    with pytest.raises(BundleError, match="symbolic link that leads outside the bundle"):
        Bundle.open(bundle_copy, verify="size")
