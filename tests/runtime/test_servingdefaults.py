"""serving.json: the engine's serving defaults, read by Engine.load, written by --apply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinyllm.errors import BundleError, ConfigError
from tinyllm.runtime.scheduler import SchedulerConfig
from tinyllm.runtime.servingdefaults import ServingDefaults, read_defaults, write_defaults


def test_built_in_defaults_are_the_schedulers() -> None:
    d = ServingDefaults()
    sched = SchedulerConfig()
    assert (d.max_batch, d.queue_size, d.chunk_size) == (
        sched.max_rows,
        sched.queue_size,
        sched.chunk_size,
    )
    assert d.options().scheduler == sched


def test_round_trip_and_given_arguments_win(tmp_path: Path) -> None:
    assert read_defaults(tmp_path) == ServingDefaults()  # no file: built-in
    chosen = ServingDefaults(threads=1, max_batch=4)
    write_defaults(tmp_path, chosen, {"slo_p95_ms": 250.0})
    assert read_defaults(tmp_path) == chosen
    assert read_defaults(tmp_path).with_given(max_batch=2, threads=None).max_batch == 2
    assert read_defaults(tmp_path).with_given(threads=None).threads == 1
    with pytest.raises(ConfigError, match="unknown serving setting 'batch'"):
        chosen.with_given(batch=3)


def test_bad_files_and_settings_are_errors(tmp_path: Path) -> None:
    (tmp_path / "serving.json").write_text("{")
    with pytest.raises(BundleError, match=r"serving\.json: not valid JSON"):
        read_defaults(tmp_path)
    (tmp_path / "serving.json").write_text(json.dumps({"settings": {"max_batches": 2}}))
    with pytest.raises(BundleError, match="unknown key 'max_batches'"):
        read_defaults(tmp_path)
    with pytest.raises(ConfigError, match="max_rows must be >= 1"):
        ServingDefaults(max_batch=0)
    with pytest.raises(ConfigError, match="threads must be >= 1"):
        ServingDefaults(threads=0)
