"""Training loop: exact resume, repeatability, NaN stop, checkpoint rotation and logs."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import ssformer.engine.criterion as criterion_module
import ssformer.engine.trainer as trainer_module
from ssformer.engine.checkpoint import load_checkpoint
from ssformer.engine.trainer import TrainingDiverged, train
from tests.engine.conftest import tiny_config


def _weights(path):
    return load_checkpoint(path)["model"]


def _assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("workers", [0, 1])
def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, monkeypatch, workers):
    extra = (f"train.num_workers={workers}",)
    straight = train(tiny_config(tmp_path / "straight", *extra))
    assert straight["iterations"] == 6

    # the same run, killed at the start of iteration 4 (after the checkpoint of iteration 3)...
    real_lr = trainer_module.poly_warmup_lr

    def crash_at_3(iteration, *args):
        if iteration == 3:
            raise KeyboardInterrupt("simulated kill")
        return real_lr(iteration, *args)

    monkeypatch.setattr(trainer_module, "poly_warmup_lr", crash_at_3)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tmp_path / "resumed", *extra))
    assert load_checkpoint(tmp_path / "resumed" / "latest.pt")["iteration"] == 3
    monkeypatch.setattr(trainer_module, "poly_warmup_lr", real_lr)
    # ...and resumed in a fresh call
    resumed = train(tiny_config(tmp_path / "resumed", *extra), resume=True)
    assert resumed["iterations"] == 6

    a, b = load_checkpoint(tmp_path / "straight" / "latest.pt"), load_checkpoint(tmp_path / "resumed" / "latest.pt")
    _assert_identical(a["model"], b["model"])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        _assert_identical(sa, sb)
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    # the logged losses of iterations 4..6 agree exactly too
    log = lambda p: {r["iter"]: r["loss"] for r in map(json.loads, p.read_text().splitlines()) if r["event"] == "train"}
    la, lb = log(tmp_path / "straight" / "log.jsonl"), log(tmp_path / "resumed" / "log.jsonl")
    assert [la[i] for i in range(1, 7)] == [lb[i] for i in range(1, 7)]


def test_fixed_seed_repeats_and_another_seed_differs(tmp_path):
    train(tiny_config(tmp_path / "a", "train.iters=3"))
    train(tiny_config(tmp_path / "b", "train.iters=3"))
    train(tiny_config(tmp_path / "c", "train.iters=3", "train.seed=1"))
    _assert_identical(_weights(tmp_path / "a" / "latest.pt"), _weights(tmp_path / "b" / "latest.pt"))
    wa, wc = _weights(tmp_path / "a" / "latest.pt"), _weights(tmp_path / "c" / "latest.pt")
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_loss = criterion_module.segmentation_loss  # what the default loss calls
    calls = {"n": 0}

    def nan_on_fifth(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(criterion_module, "segmentation_loss", nan_on_fifth)
    work = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"diverged at iteration 5 .*the loss is nan.*latest\.pt \(iteration 3\) was kept"):
        train(tiny_config(work))
    state = load_checkpoint(work / "latest.pt")
    assert state["iteration"] == 3
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (work / "iter_6.pt").exists()
    events = [json.loads(line)["event"] for line in (work / "log.jsonl").read_text().splitlines()]
    assert events[-1] == "diverged"


def test_outputs_rotation_eval_and_accumulation(tmp_path):
    work = tmp_path / "run"
    summary = train(tiny_config(work, "train.iters=8", "train.checkpoint_interval=2", "train.keep_checkpoints=2",
                                "train.eval_interval=4", "train.grad_accum=2", "train.clip_grad=1.0"))
    assert sorted(p.name for p in work.glob("iter_*.pt")) == ["iter_6.pt", "iter_8.pt"]
    assert (work / "best.pt").is_file() and (work / "model" / "model.safetensors").is_file()
    records = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["event"] == "eval"]
    assert [r["iter"] for r in evals] == [4, 8] and len(evals[0]["IoU"]) == 4
    assert summary["best"]["mIoU"] == max(r["mIoU"] for r in evals)
    train_records = [r for r in records if r["event"] == "train"]
    assert len(train_records) == 8 and all(r["loss"] > 0 for r in train_records)
    # lr logged for iteration 1 (0-based 0) is the warmup start: 1e-3 * 1e-6 * (1 - 0/8)
    assert train_records[0]["lr"] == pytest.approx(1e-9, rel=1e-9)
    # two micro-batches of 2 per iteration: the data stream has advanced 8 * 2 * 2 samples
    assert load_checkpoint(work / "latest.pt")["iteration"] == 8


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="latest.pt"):
        train(tiny_config(tmp_path / "empty"), resume=True)


def test_pretrained_encoder_weights_are_loaded_and_reported(tmp_path, capsys):
    # train once, keep only the encoder as a "pretrained backbone" file (ssformer keys)
    train(tiny_config(tmp_path / "source", "train.iters=2"))
    source = _weights(tmp_path / "source" / "latest.pt")
    encoder = {k: v for k, v in source.items() if k.startswith("encoder.")}
    torch.save(encoder, tmp_path / "encoder.pt")
    # one update at the warmup's first lr (1e-3 * 1e-6) leaves the loaded weights within 1e-6
    train(tiny_config(tmp_path / "run", "train.iters=1", "train.seed=5",
                      f"model.pretrained={tmp_path / 'encoder.pt'}"))
    assert "pretrained weights" in capsys.readouterr().out
    after = _weights(tmp_path / "run" / "latest.pt")
    for key, value in encoder.items():
        if value.is_floating_point():
            torch.testing.assert_close(after[key], value, rtol=0, atol=1e-6)


def test_tensorboard_events_mirror_the_json_log(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install -e '.[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    work = tmp_path / "run"
    train(tiny_config(work, "train.iters=4", "train.log_interval=2", "train.eval_interval=4"))
    (events_file,) = (work / "tensorboard").iterdir()
    events = EventAccumulator(str(events_file))
    events.Reload()
    assert {"train/loss", "train/lr", "eval/mIoU"} <= set(events.Tags()["scalars"])
    records = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    logged = {r["iter"]: r["loss"] for r in records if r["event"] == "train"}
    assert {e.step: e.value for e in events.Scalars("train/loss")} == pytest.approx(logged, rel=1e-6)
    evals = [r for r in records if r["event"] == "eval"]
    assert events.Scalars("eval/mIoU")[-1].value == pytest.approx(evals[-1]["mIoU"], rel=1e-6)


def test_configured_loss_list_with_class_weights_and_ohem_trains(tmp_path):
    from ssformer.data.frequencies import class_weights
    from ssformer.engine.trainer import build_train_dataset

    messages = []
    work = tmp_path / "run"
    config = tiny_config(work, "train.iters=2", "train.loss=[{type: cross_entropy, class_weight: median_frequency}, "
                         "{type: dice, weight: 0.5}, {type: lovasz, weight: 0.5}, {type: focal}]",
                         "train.ohem={thresh: 0.7, min_kept: 100}")
    train(config, echo=messages.append)
    expected = class_weights("median_frequency", [build_train_dataset(config)[1]])
    assert f"train.loss[0].class_weight median_frequency: {', '.join(f'{w:.4f}' for w in expected)}" in messages
    records = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records if r["event"] == "train"] == [1, 2]
    assert all(r["loss"] > 0 for r in records if r["event"] == "train")


def _amp_modes(device: torch.device) -> list[str]:
    """The autocast modes ``device`` runs natively: bf16 on the CPU; fp16 and (Ampere+) bf16 on GPUs."""
    if device.type != "cuda":
        return ["bf16"]
    from ssformer.devices import cuda_bf16_native

    return ["fp16"] + (["bf16"] if cuda_bf16_native(device) else [])


def _kill_at(monkeypatch, iteration: int) -> None:
    real_lr = trainer_module.poly_warmup_lr

    def crash(it, *args):
        if it == iteration:
            raise KeyboardInterrupt("simulated kill")
        return real_lr(it, *args)

    monkeypatch.setattr(trainer_module, "poly_warmup_lr", crash)


def _train_losses(work_dir) -> dict[int, float]:
    """Logged loss per iteration (the resumed run's where a killed run had logged it too)."""
    records = [json.loads(line) for line in (work_dir / "log.jsonl").read_text().splitlines()]
    return {r["iter"]: r["loss"] for r in records if r["event"] == "train"}


def test_mixed_precision_kill_and_resume_on_every_device(tmp_path, monkeypatch, device):
    """Each native autocast mode trains, is killed after its iteration-3 checkpoint and resumes to the
    end. On the CPU the result is bit-identical to an uninterrupted run. GPU kernels (atomic-add
    backward passes) are not bit-deterministic and AdamW amplifies tiny differences, so there the
    first resumed iteration's loss must match closely (a wrong data position, RNG or state would
    change it by far more) and the later ones loosely."""
    for amp in _amp_modes(device):
        extra = (f"train.device={device}", f"train.amp={amp}")
        train(tiny_config(tmp_path / amp / "straight", *extra))
        with monkeypatch.context() as m:
            _kill_at(m, 3)
            with pytest.raises(KeyboardInterrupt):
                train(tiny_config(tmp_path / amp / "resumed", *extra))
        assert train(tiny_config(tmp_path / amp / "resumed", *extra), resume=True)["iterations"] == 6
        a, b = (load_checkpoint(tmp_path / amp / run / "latest.pt") for run in ("straight", "resumed"))
        assert bool(a["scaler"]) == (amp == "fp16")  # fp16 keeps its loss scale in the checkpoint
        la, lb = (_train_losses(tmp_path / amp / run) for run in ("straight", "resumed"))
        assert sorted(lb) == list(range(1, 7))
        if device.type == "cpu":
            assert [la[i] for i in range(1, 7)] == [lb[i] for i in range(1, 7)], amp
            for key, value in a["model"].items():
                assert torch.equal(b["model"][key], value), (amp, key)
        else:
            assert lb[4] == pytest.approx(la[4], rel=1e-3), amp
            assert [lb[i] for i in (5, 6)] == pytest.approx([la[i] for i in (5, 6)], rel=5e-2), amp
            assert all(torch.isfinite(v).all() for v in b["model"].values() if v.is_floating_point())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 training needs CUDA (tools/gpu_check.sh)")
def test_a_bf16_run_resumes_with_fp16(tmp_path):
    """The empty scaler state of a bf16 (or fp32) run is not loaded into fp16's enabled GradScaler."""
    from ssformer.devices import cuda_bf16_native

    first = "bf16" if cuda_bf16_native(torch.device("cuda")) else "none"
    train(tiny_config(tmp_path, "train.device=cuda", f"train.amp={first}", "train.iters=3"))
    assert load_checkpoint(tmp_path / "latest.pt")["scaler"] == {}
    assert train(tiny_config(tmp_path, "train.device=cuda", "train.amp=fp16"), resume=True)["iterations"] == 6
    assert load_checkpoint(tmp_path / "latest.pt")["scaler"]["scale"] > 0


def test_non_finite_weights_are_never_checkpointed(tmp_path, monkeypatch):
    """Weights that turn inf while the loss still looks finite (too high an lr) stop the run before the
    checkpoint of that iteration: the last good checkpoint stays the one --resume starts from."""
    real_step = trainer_module.train_step

    def step_then_blow_up(run, *args, **kwargs):
        result = real_step(run, *args, **kwargs)
        if run.iteration == 6:
            with torch.no_grad():
                next(run.model.parameters()).fill_(float("inf"))
        return result

    monkeypatch.setattr(trainer_module, "train_step", step_then_blow_up)
    work = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"diverged at iteration 6 \(lr .*\): weight encoder\..* is not finite"
                                               r".*latest\.pt \(iteration 3\) was kept"):
        train(tiny_config(work))
    state = load_checkpoint(work / "latest.pt")
    assert state["iteration"] == 3 and not (work / "iter_6.pt").exists()


def test_non_finite_gradients_stop_the_run(tmp_path, monkeypatch):
    real_norm = trainer_module._grad_norm
    monkeypatch.setattr(trainer_module, "_grad_norm",
                        lambda params: real_norm(params) * (float("nan") if params[0].grad.sum() != 0 else 1))
    with pytest.raises(TrainingDiverged, match=r"diverged at iteration 1 .*the gradients hold NaN or inf"):
        train(tiny_config(tmp_path))


def test_an_lr_of_1e4_leaves_a_finite_checkpoint_that_resumes(tmp_path):
    # A checkpoint every iteration and a warmup that starts small: the first update is sane and
    # saved, so the run diverges after a checkpoint on every CPU (the iteration it diverges at
    # differs between CPU families: 3 on an AVX2-only Zen 3, later on a Zen 4).
    with pytest.raises(TrainingDiverged, match="--resume restarts from it"):
        train(tiny_config(tmp_path, "train.lr=1.0e4", "train.checkpoint_interval=1", "train.warmup_iters=4"))
    state = load_checkpoint(tmp_path / "latest.pt")
    finite = [torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point()]
    finite += [torch.isfinite(v).all() for s in state["optimizer"]["state"].values() for v in s.values()
               if torch.is_tensor(v) and v.is_floating_point()]
    assert all(finite)
    # The weights of the last finite checkpoint may already be far off (how far depends on the CPU);
    # the first one, after the warmup's small first step, resumes at a sane rate to the end.
    shutil.copyfile(tmp_path / "iter_1.pt", tmp_path / "latest.pt")
    assert train(tiny_config(tmp_path, "train.lr=1.0e-3"), resume=True)["iterations"] == 6


def test_a_loss_far_above_its_running_level_stops_the_run(tmp_path, monkeypatch):
    from ssformer.engine.trainer import LossWatch

    watch = LossWatch(window=3, factor=10)
    assert [watch.far_above(v) for v in (2.0, 1.5, 1.8, 9.0)] == [None, None, None, None]
    assert watch.far_above(40.0) == 1.8  # median of the last three: 1.5, 1.8, 9.0
    monkeypatch.setattr(trainer_module, "LossWatch", lambda: LossWatch(window=3, factor=10))
    real_step = trainer_module.train_step

    def spike_at_5(run, *args, **kwargs):
        loss, diverged = real_step(run, *args, **kwargs)
        return (loss * 1000 if run.iteration == 5 else loss), diverged

    monkeypatch.setattr(trainer_module, "train_step", spike_at_5)
    with pytest.raises(TrainingDiverged, match=r"diverged at iteration 5 .*the loss jumped to .* more than 10x"):
        train(tiny_config(tmp_path))
