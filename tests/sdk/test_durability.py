"""Writer lock, atomic swap and clean-up of killed writes (kill -9 trials: test_crash_safety)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tinyllm.bundle import Bundle, BundleWriter
from tinyllm.durability import WriterLock, exchange_dirs, recover_folder, write_text_atomic
from tinyllm.errors import BundleError, BundleLockedError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")


def test_a_second_writer_to_the_same_path_fails_clearly(tmp_path: Path) -> None:
    out = tmp_path / "b.tllm"
    with BundleWriter(out) as first:
        first.save_tensors("x.safetensors", {"x": np.zeros(2, dtype=np.float32)})
        with pytest.raises(BundleLockedError, match=rf"another process \(pid {os.getpid()}\)"):
            BundleWriter(out).__enter__()
        with BundleWriter(tmp_path / "other.tllm"):  # another path has its own lock
            pass
    assert not (tmp_path / ".b.tllm.lock").exists()  # released and removed
    with BundleWriter(out):  # free again
        pass


def test_a_stale_lock_file_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "b.tllm"
    (tmp_path / ".b.tllm.lock").write_text("99999")  # left by a killed writer: unlocked
    with WriterLock(out) as lock:
        assert (tmp_path / ".b.tllm.lock").read_text() == str(os.getpid())
        assert lock.path.exists()
    assert not lock.path.exists()


_ADD = textwrap.dedent(
    """
    import dataclasses
    import sys
    import tinyllm
    from tinyllm.errors import BundleLockedError
    spec = tinyllm.api.load_tasks().task("rewrite")
    spec = dataclasses.replace(spec, name=sys.argv[3])
    try:
        tinyllm.api.add_tasks(sys.argv[1], sys.argv[2], [spec], overwrite=True)
    except BundleLockedError as e:
        print("LOCKED", e)
        sys.exit(2)
    """
)


def _add(script: Path, parent: Path, out: Path, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script), str(parent), str(out), name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def test_two_processes_adding_tasks_to_one_bundle(tiny_llama_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "tasks.tllm"
    script = tmp_path / "add.py"
    script.write_text(_ADD)
    with BundleWriter(out):  # this process writes: the other one loses, clearly
        loser = _add(script, tiny_llama_bundle, out, "one")
        stdout, stderr = loser.communicate(timeout=300)
    assert loser.returncode == 2, stderr
    assert f"{out} is being written by another process (pid {os.getpid()})" in stdout
    assert not out.exists()
    for _ in range(2):  # at once: one wins; the other loses clearly or runs after it
        procs = [_add(script, tiny_llama_bundle, out, name) for name in ("one", "two")]
        results = [p.communicate(timeout=300) for p in procs]
        codes = [p.returncode for p in procs]
        assert set(codes) <= {0, 2} and 0 in codes, results
        for code, (stdout, _) in zip(codes, results, strict=True):
            assert code == 0 or "is being written by another process" in stdout
        bundle = Bundle.open(out)  # complete, sha256 checked: one writer's result
        assert len(set(bundle.manifest.tasks) & {"one", "two"}) == 1
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_exchange_swaps_two_folders(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "f").write_text("A")
    (b / "f").write_text("B")
    if not exchange_dirs(a, b):
        pytest.skip("this file system has no atomic exchange")
    assert ((a / "f").read_text(), (b / "f").read_text()) == ("B", "A")
    with pytest.raises(OSError, match="cannot swap"):
        exchange_dirs(a, tmp_path / "missing")


def test_recover_puts_back_a_bundle_set_aside_and_removes_staging(
    tiny_llama_bundle: Path, tmp_path: Path
) -> None:
    import shutil

    out = tmp_path / "m.tllm"
    kept = tmp_path / ".m.tllm.old-x1" / "bundle"
    shutil.copytree(tiny_llama_bundle, kept)
    (tmp_path / ".m.tllm.tmp-y2").mkdir()
    with pytest.raises(BundleError, match=r"interrupted.*\.m\.tllm\.old-x1/bundle: move it back"):
        Bundle.open(out)
    recover_folder(out)
    assert Bundle.open(out).manifest.name == "tiny-llama"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tllm"]


def test_write_text_atomic_replaces_whole(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    path.write_text("old")
    write_text_atomic(path, "new")
    assert path.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["stats.json"]
    assert oct(path.stat().st_mode & 0o777) == "0o644"
