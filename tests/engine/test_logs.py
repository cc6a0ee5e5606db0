"""log.jsonl is strict JSON with one record per event across resumes; progress shows in plain logs too."""

from __future__ import annotations

import json

import pytest

import ssformer.engine.trainer as trainer_module
from ssformer.engine.logs import JsonLog, read_log
from ssformer.engine.trainer import train
from tests.engine.conftest import tiny_config


def _strict_records(path):
    def refuse(name):
        raise ValueError(f"non-JSON constant {name}")
    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def test_undefined_metrics_are_null(tmp_path):
    log = JsonLog(tmp_path / "log.jsonl", enabled=True)
    log.write({"event": "eval", "iter": 1, "mIoU": float("nan"), "IoU": [0.5, float("nan")], "loss": float("inf")})
    log.close()
    (record,) = _strict_records(tmp_path / "log.jsonl")
    assert record == {"event": "eval", "iter": 1, "mIoU": None, "IoU": [0.5, None], "loss": None}


def test_a_cut_line_is_dropped_when_read(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"event": "train", "iter": 1}\n{"event": "train", "it')  # a write cut by a full disk
    assert read_log(path) == [{"event": "train", "iter": 1}]
    JsonLog(path, enabled=True, keep_until=5).close()
    assert _strict_records(path) == [{"event": "train", "iter": 1}]


def test_resume_keeps_one_record_per_iteration(tmp_path, monkeypatch):
    """Killed after iteration 4 (checkpoint at 3), then resumed: iterations 4.. are logged once, not twice."""
    config = tiny_config(tmp_path, "train.log_interval=1", "train.eval_interval=3")
    real_lr = trainer_module.poly_warmup_lr

    def crash_at_4(iteration, *args):
        if iteration == 4:
            raise KeyboardInterrupt("simulated kill")
        return real_lr(iteration, *args)

    with monkeypatch.context() as m:
        m.setattr(trainer_module, "poly_warmup_lr", crash_at_4)
        with pytest.raises(KeyboardInterrupt):
            train(config)
    logged = [r["iter"] for r in _strict_records(tmp_path / "log.jsonl") if r["event"] == "train"]
    assert logged == [1, 2, 3, 4]  # iteration 4 ran but its checkpoint was never written
    train(config, resume=True)
    records = _strict_records(tmp_path / "log.jsonl")
    assert [r["iter"] for r in records if r["event"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert [r["iter"] for r in records if r["event"] == "eval"] == [3, 6]


def test_progress_is_printed_when_output_is_not_a_terminal(tmp_path, capsys):
    messages: list[str] = []
    train(tiny_config(tmp_path, "train.progress=true", "train.log_interval=2"), echo=messages.append)
    lines = [m for m in messages if m.startswith("iter ") and "loss" in m]
    assert [line.split()[1] for line in lines] == ["2/6", "4/6", "6/6"]
    assert all(" lr " in line and "s/iter" in line and "eta" in line and "MiB" in line for line in lines)
