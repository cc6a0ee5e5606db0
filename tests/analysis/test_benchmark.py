"""``ssformer benchmark``: the JSON it prints is consistent, both modes run, bad input is refused early."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import ssformer
from ssformer.analysis.benchmark import percentile
from ssformer.cli.main import main
from tests.conftest import tiny_model_kwargs


@pytest.fixture
def tiny_dir(tmp_path):
    torch.manual_seed(0)
    model = ssformer.SSformer(**tiny_model_kwargs(num_classes=3))
    model.save_pretrained(tmp_path / "tiny")
    return tmp_path / "tiny", model


def run_json(capsys, *argv) -> dict:
    code = main(["benchmark", *map(str, argv), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_inference_report_is_consistent(capsys, tiny_dir):
    path, model = tiny_dir
    r = run_json(capsys, "--checkpoint", path, "--size", 40, 56, "--batch", 2, "--runs", 3, "--warmup", 1)
    assert (r["mode"], r["height"], r["width"], r["batch"], r["dtype"], r["device"]) == \
           ("inference", 40, 56, 2, "fp32", "cpu")
    assert r["params"] == sum(p.numel() for p in model.parameters())
    assert len(r["latencies_s"]) == 3 and all(t > 0 for t in r["latencies_s"])
    assert r["latency_median_s"] == sorted(r["latencies_s"])[1]
    assert r["latency_p90_s"] == pytest.approx(np.percentile(r["latencies_s"], 90))
    assert r["images_per_s"] == pytest.approx(2 / r["latency_median_s"])
    assert r["flops"] > 0 and r["peak_memory_kind"] == "rss" and r["peak_memory_bytes"] > 10 * 2 ** 20


def test_train_bf16_and_checkpointing(capsys, tiny_dir):
    path, _ = tiny_dir
    r = run_json(capsys, "--checkpoint", path, "--size", 32, 32, "--batch", 2, "--runs", 2, "--warmup", 1,
                 "--train", "--dtype", "bf16", "--gradient-checkpointing", "--no-flops")
    assert r["mode"] == "train" and r["dtype"] == "bf16" and r["flops"] is None
    assert len(r["latencies_s"]) == 2


def test_bf16_inference_of_named_model_text_output(capsys):
    code = main(["benchmark", "ssformer_swin_t", "--num-classes", "2", "--size", "32", "32", "--runs", "1",
                 "--warmup", "0", "--dtype", "bf16", "--no-flops", "--threads", "1"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "ssformer_swin_t: inference, 1x32x32, bf16, cpu, 1 threads" in out and "images/s" in out


@pytest.mark.parametrize("argv,message", [
    (["ssformer_swin_t", "--checkpoint", "x"], "either a model name or --checkpoint"),
    ([], "either a model name or --checkpoint"),
    (["ssformer_swin_t", "--gradient-checkpointing"], "only applies with --train"),
    (["ssformer_swin_t", "--runs", "0"], "runs must be >= 1"),
    (["ssformer_swin_t", "--threads", "0"], "--threads must be >= 1"),
    (["ssformer_swin_t", "--device", "cuda"] if not torch.cuda.is_available() else
     ["ssformer_swin_t", "--batch", "0"], "cuda" if not torch.cuda.is_available() else "batch"),
])
def test_bad_arguments_are_refused(capsys, argv, message):
    threads = torch.get_num_threads()
    try:
        code = main(["benchmark", *argv, "--size", "32", "32", "--no-flops"])
    finally:
        torch.set_num_threads(threads)
    _, err = capsys.readouterr()
    assert code == 2 and message in err and err.startswith("ssformer benchmark: error:")


def test_missing_checkpoint_names_the_file(capsys, tmp_path):
    code = main(["benchmark", "--checkpoint", str(tmp_path / "nope.pth")])
    _, err = capsys.readouterr()
    assert code == 2 and "nope.pth" in err


def test_percentile_matches_numpy():
    values = [0.5, 0.1, 0.9, 0.3, 0.7, 0.2]
    for q in (0.0, 0.5, 0.9, 1.0):
        assert percentile(values, q) == pytest.approx(np.percentile(values, 100 * q))


def test_train_step_uses_the_trainers_optimizer_and_scaler(monkeypatch, device):
    """``--train`` builds the trainer's AdamW (decay groups, not fused) and, for fp16, its GradScaler."""
    from ssformer.analysis.benchmark import BenchmarkSettings, benchmark

    made, steps = [], []
    real_adamw, real_step = torch.optim.AdamW, torch.amp.GradScaler.step

    class SpyAdamW(real_adamw):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    def spy_step(scaler, optimizer, *args, **kwargs):
        steps.append(scaler.is_enabled())
        return real_step(scaler, optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", SpyAdamW)
    monkeypatch.setattr(torch.amp.GradScaler, "step", spy_step)
    torch.manual_seed(0)
    model = ssformer.SSformer(**tiny_model_kwargs(num_classes=3))
    dtype = "fp16" if device.type == "cuda" else "bf16"
    benchmark(model, BenchmarkSettings(64, 64, batch=2, dtype=dtype, device=str(device), train=True, runs=1,
                                       warmup=0, count_flops=False))
    (optimizer,) = made
    assert [g["name"] for g in optimizer.param_groups] == ["decay", "no_decay"]
    assert not optimizer.defaults.get("fused")
    assert steps == [dtype == "fp16"]  # the scaler steps the optimiser; enabled for fp16 only


def test_fp16_training_off_cuda_is_refused_naming_the_dtype_setting(tiny_dir):
    from ssformer.analysis.benchmark import BenchmarkSettings, benchmark

    _, model = tiny_dir
    with pytest.raises(ValueError, match="--dtype=fp16 needs a CUDA device"):
        benchmark(model, BenchmarkSettings(32, 32, dtype="fp16", device="cpu", train=True, runs=1, warmup=0,
                                           count_flops=False))


def test_compile_on_the_cpu_says_it_loses_and_points_to_openvino(capsys, tiny_dir, monkeypatch):
    """Compiled SSformer is slower than eager on CPUs (docs/benchmarks.md): the command says so before timing."""
    import ssformer.cli.benchmark as command

    compiled = []
    real = command.benchmark
    monkeypatch.setattr(command, "benchmark", lambda model, settings, **k: compiled.append(settings.compile) or real(
        model, dataclasses.replace(settings, compile=False), **k))  # the note is tested; compiling takes a minute
    path, _ = tiny_dir
    run_json(capsys, "--checkpoint", path, "--size", 32, 32, "--runs", 1, "--warmup", 0, "--compile")
    assert compiled == [True]
    main(["benchmark", "--checkpoint", str(path), "--size", "32", "32", "--runs", "1", "--warmup", "0", "--compile"])
    err = capsys.readouterr().err
    assert "slower than eager" in err and "ssformer export --format openvino" in err
    main(["benchmark", "--checkpoint", str(path), "--size", "32", "32", "--runs", "1", "--warmup", "0"])
    assert "openvino" not in capsys.readouterr().err
