"""A tiny training setup on the shipped synthetic sample: seconds per run on a CPU."""

from __future__ import annotations

from ssformer.engine.config import TrainingConfig, load_config, sample_root


def tiny_overrides(work_dir, *extra: str) -> list[str]:
    """On the CPU unless ``extra`` sets ``train.device`` (tests that take the ``device`` fixture do)."""
    return [f"data.root={sample_root()}", f"work_dir={work_dir}", "train.device=cpu",
            "model.embed_dim=8", "model.depths=[1,1,1,1]", "model.num_heads=[1,1,2,2]", "model.window_size=4",
            "model.decoder_dim=8", "model.drop_path_rate=0.1", "model.dropout=0.1",
            "data.train_transform.crop_size=[32,32]", "data.test_transform.img_scale=[64,48]",
            "train.iters=6", "train.batch_size=2", "train.num_workers=0", "train.warmup_iters=2",
            "train.lr=1.0e-3", "train.amp=none", "train.log_interval=1", "train.eval_interval=1000",
            "train.checkpoint_interval=3", "train.keep_checkpoints=5", "train.progress=false", *extra]


def tiny_cli_sets(work_dir, *extra: str) -> list[str]:
    """``--set`` arguments for :func:`tiny_overrides` (data root and work dir go through their own flags)."""
    args = []
    for item in tiny_overrides(work_dir, *extra):
        if not item.startswith(("data.root=", "work_dir=")):
            args += ["--set", item]
    return args


def tiny_config(work_dir, *extra: str) -> TrainingConfig:
    return load_config("sample", tiny_overrides(work_dir, *extra))
