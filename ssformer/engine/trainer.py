"""Iteration-based training: AdamW + poly/warmup, AMP, accumulation, clipping, DDP, exact resume.

Work-directory layout: ``latest.pt`` (every ``checkpoint_interval`` iterations and at the end),
``best.pt`` (best mIoU so far), ``iter_N.pt`` (the newest ``keep_checkpoints``), ``log.jsonl`` (one
JSON object per log/eval event), ``config.yaml`` (the resolved config), ``model/`` (the final model
folder: weights, preprocessing, labels and recipe, as ``save_pretrained``) and TensorBoard events
when ``tensorboard`` is installed. Every checkpoint loads as a model through ``ssformer.SSformer.from_pretrained``.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import statistics
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

import ssformer
from ssformer.data import DataError, TrainTransform, build_dataset
from ssformer.data.frequencies import class_weights
from ssformer.data.preprocessing import Preprocessing, TestTransform, from_training_config
from ssformer.devices import set_cpu_threads
from ssformer.distributed import DistInfo, all_reduce_sum, barrier, distributed_session, session_device, torchrun_env
from ssformer.engine.checkpoint import capture_rng, load_checkpoint, restore_rng, rotate_checkpoints, save_checkpoint
from ssformer.engine.config import TrainingConfig
from ssformer.engine.criterion import build_criterion
from ssformer.engine.evaluator import evaluate
from ssformer.engine.logs import JsonLog, Progress
from ssformer.engine.optim import build_grad_scaler, build_optimizer, load_scaler_state, poly_warmup_lr, set_lr
from ssformer.engine.sampling import ConcatSeeded, StreamBatchSampler
from ssformer.engine.workdir import clear_earlier_run, refuse_earlier_run
from ssformer.errors import UserError
from ssformer.precision import amp_precision, autocast
from ssformer.utils import remove_stale_temporaries


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run stopped without saving the bad state."""


# --- building blocks ----------------------------------------------------------------------------
def _splits(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def build_train_dataset(config: TrainingConfig):
    data = config.data
    tt = data.train_transform
    # Crops are padded with the dataset's own void value (a folder dataset may use another than 255).
    ignore_index = data.options.get("ignore_index", 255)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise UserError(f"data.options.ignore_index must be a whole number (the labels' void value), got {ignore_index!r}")
    transform = TrainTransform(tt, ignore_index=ignore_index)
    parts = [build_dataset({"type": data.type, "root": data.root, **data.options}, transform, split=s)
             for s in _splits(data.train_split)]
    return parts[0] if len(parts) == 1 else ConcatSeeded(parts), parts[0]


def build_eval_dataset(config: TrainingConfig, split: str | None = None, preprocessing: Preprocessing | None = None):
    """The evaluation split, preprocessed as ``preprocessing`` (default: the config's test settings)."""
    data = config.data
    split = split or config.eval.split or data.val_split
    transform = TestTransform(preprocessing or from_training_config(config.to_dict()))
    return build_dataset({"type": data.type, "root": data.root, **data.options}, transform, split=split)


class LogitsAtQuarter(nn.Module):
    """``forward`` = the model's 1/4-resolution logits, so DDP hooks see the training computation."""

    def __init__(self, model: ssformer.SSformer):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_logits(images)


def _set_bn_eval(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _to_primitive(value):
    """YAML/JSON-safe copy (tuples -> lists) for storing configs in weights_only checkpoints."""
    if isinstance(value, dict):
        return {str(k): _to_primitive(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_primitive(v) for v in value]
    return value


# --- the loop -----------------------------------------------------------------------------------
def train(config: TrainingConfig, resume: bool = False, echo=print, overwrite: bool = False) -> dict[str, Any]:
    """Run (or resume) the training described by a validated config; returns a summary dict.

    A work directory that holds an earlier run is refused unless ``resume`` (continue it) or
    ``overwrite`` (delete it first). Under torchrun the process group is joined here and destroyed
    on the way out (unless the caller had created it).
    """
    tc = config.train
    if config.work_dir is None:
        raise UserError("work_dir is not set: give --work-dir DIR")
    if resume and overwrite:
        raise UserError("--resume continues the run in the work dir and --overwrite deletes it: give one of them")
    if not resume and not overwrite:
        refuse_earlier_run(Path(config.work_dir))
    device = session_device(tc.device, "train.device")  # checked before joining the group: a bad one fails alone
    precision = amp_precision(tc.amp, device, "train.amp")
    for line in precision.notes() if torchrun_env().is_main else []:
        echo(line)
    tc.amp = precision.mode  # what ``auto`` chose is recorded in config.yaml and the model's recipe
    with distributed_session(device) as dist_info:
        return _train(config, Start(resume, overwrite), echo, device, dist_info)


@dataclass(frozen=True)
class Start:
    """How a run begins in its work directory: continuing the earlier run, or replacing it."""

    resume: bool = False
    overwrite: bool = False


@dataclass
class Run:
    """What a training run changes as it goes: weights, optimiser and loss-scaler state, the
    number of completed iterations and the best evaluation so far (all of it in a checkpoint)."""

    model: ssformer.SSformer
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    iteration: int = 0
    best: dict[str, Any] = field(default_factory=lambda: {"mIoU": -1.0, "iter": 0})


# --- builders -------------------------------------------------------------------------------------
def build_training_model(config: TrainingConfig, dataset, device: torch.device, dist_info: DistInfo,
                         echo: Callable[[str], object]) -> ssformer.SSformer:
    """The model to train: seeded initial weights (the same on every process), its preprocessing and
    recipe attached, pretrained weights, gradient checkpointing and SyncBatchNorm as configured."""
    tc = config.train
    torch.manual_seed(tc.seed)  # identical initial weights on every rank
    model = ssformer.SSformer(config.model.to_model_config(dataset.num_classes, dataset.class_names, dataset.palette))
    # What travels with the weights into every checkpoint and model/: test pipeline, labels, recipe.
    model.preprocessing = from_training_config(config.to_dict(), ignore_index=dataset.ignore_index)
    model.recipe = _to_primitive(config.to_dict())
    if config.model.pretrained is not None:
        report = ssformer.load_weights(model, config.model.pretrained, strict=False)
        if dist_info.is_main:
            echo(f"pretrained weights {config.model.pretrained}: {report}")
    if tc.gradient_checkpointing:
        model.set_gradient_checkpointing(True)
    if tc.sync_bn and dist_info.enabled:
        if device.type != "cuda":
            raise UserError("train.sync_bn needs CUDA devices (torch's SyncBatchNorm does not run on CPU)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model.to(device)


def wrap_for_ddp(model: ssformer.SSformer, device: torch.device, dist_info: DistInfo) -> nn.Module:
    """The module the loop calls: 1/4-resolution logits, under DDP when distributed."""
    net: nn.Module = LogitsAtQuarter(model)
    if not dist_info.enabled:
        return net
    # Gradients live in DDP's buckets (allocated here in the parameters' layout) and are zeroed, not
    # freed, each iteration: autograd's channels-last gradients of 1x1 convolutions would otherwise
    # trip DDP's "grad strides do not match bucket view strides" check.
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    return DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                   gradient_as_bucket_view=True)


def build_loader(config: TrainingConfig, train_set, start_iter: int, dist_info: DistInfo,
                 device: torch.device) -> Iterator[dict[str, Any]]:
    """The endless stream of (micro-)batches from iteration ``start_iter`` on (see ``engine.sampling``)."""
    tc = config.train
    accum, batch = tc.grad_accum, tc.batch_size
    sampler = StreamBatchSampler(len(train_set), batch, tc.seed, start=start_iter * accum * batch *
                                 dist_info.world_size, rank=dist_info.rank, world_size=dist_info.world_size)
    loader = DataLoader(train_set, batch_sampler=sampler, num_workers=tc.num_workers,
                        pin_memory=device.type == "cuda", generator=torch.Generator(), persistent_workers=False)
    return iter(loader)


# --- checkpoints ----------------------------------------------------------------------------------
def checkpoint_state(run: Run, device: torch.device, dist_info: DistInfo) -> dict[str, Any]:
    """Everything ``--resume`` needs (every process's RNG states gathered), and a complete model."""
    rng = capture_rng(device)
    if dist_info.enabled:
        gathered: list = [None] * dist_info.world_size
        torch.distributed.all_gather_object(gathered, rng)
        rng = gathered
    model = run.model
    return {"model": model.state_dict(), "model_config": _to_primitive(model.config.to_dict()),
            "optimizer": run.optimizer.state_dict(), "scaler": run.scaler.state_dict(), "iteration": run.iteration,
            "rng": rng, "best": run.best, "world_size": dist_info.world_size, "training_config": model.recipe,
            "preprocessing": model.preprocessing.to_dict()}


def resume_run(run: Run, latest: Path, device: torch.device, dist_info: DistInfo) -> None:
    """Load ``latest`` into ``run`` and restore this process's RNG states from it."""
    if not latest.is_file():
        raise FileNotFoundError(f"--resume: {latest} not found")
    state = load_checkpoint(latest)
    missing = [k for k in ("model", "optimizer", "scaler", "iteration", "rng", "best") if k not in state]
    if missing:
        raise UserError(f"--resume: {latest} is not a training checkpoint of this package (no {', '.join(missing)})")
    saved = state.get("model_config") or {}
    differ = [k for k, v in run.model.config.to_dict().items()
              if k in saved and _to_primitive(v) != saved[k] and k not in ("class_names", "palette")]
    if differ:
        raise UserError(f"--resume: {latest} holds a model with other settings ("
                        + ", ".join(f"model {k} {saved[k]} there, {_to_primitive(getattr(run.model.config, k))} "
                                     f"here" for k in differ)
                        + f"); resume with the config it was trained with ({latest.parent / 'config.yaml'})")
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    load_scaler_state(run.scaler, state["scaler"])
    run.iteration, run.best = int(state["iteration"]), dict(state["best"])
    if dist_info.world_size != state.get("world_size", 1):
        raise UserError(f"{latest} was written by {state.get('world_size', 1)} processes, "
                        f"this run has {dist_info.world_size}; exact resume needs the same number")
    restore_rng(state["rng"][dist_info.rank] if isinstance(state["rng"], list) else state["rng"], device)


def save_checkpoints(run: Run, work_dir: Path, keep: int, device: torch.device, dist_info: DistInfo) -> None:
    """``latest.pt`` and ``iter_N.pt`` (the newest ``keep``), written by the main process only."""
    state = checkpoint_state(run, device, dist_info)
    if dist_info.is_main:
        save_checkpoint(state, work_dir / "latest.pt")
        if keep > 0:
            save_checkpoint(state, work_dir / f"iter_{run.iteration}.pt")
        rotate_checkpoints(work_dir, keep)
    barrier()


# --- one update -----------------------------------------------------------------------------------
def train_step(run: Run, net: nn.Module, criterion: Callable, stream: Iterator[dict[str, Any]], lr: float,
               config: TrainingConfig, device: torch.device, dist_info: DistInfo) -> tuple[float, str | None]:
    """One optimiser update over ``train.grad_accum`` micro-batches at learning rate ``lr``.

    Returns (loss summed over the processes, what diverged: None, "loss" or "gradients"); a
    non-finite loss or gradient on any process takes no step, so the weights stay as they were.
    """
    tc = config.train
    accum = tc.grad_accum
    set_lr(run.optimizer, lr)
    run.optimizer.zero_grad(set_to_none=not dist_info.enabled)  # DDP: keep the bucket views
    loss_total = torch.zeros((), device=device)
    for micro in range(accum):
        sample = _next_batch(stream)
        images = sample["image"].to(device, non_blocking=True)
        labels = sample["label"].to(device, non_blocking=True)
        sync = contextlib.nullcontext() if not dist_info.enabled or micro == accum - 1 else net.no_sync()
        with sync:
            with autocast(device, tc.amp):
                logits = net(images)
            loss = criterion(logits, labels)
            run.scaler.scale(loss / accum).backward()
        loss_total += loss.detach() / accum
    params = [p for p in run.model.parameters() if p.requires_grad]
    if tc.clip_grad is not None:
        run.scaler.unscale_(run.optimizer)
    # fp16's loss scaler skips steps with inf gradients by design; otherwise they mean divergence
    grads_finite = run.scaler.is_enabled() or bool(torch.isfinite(_grad_norm(params)))
    bad = torch.stack([~torch.isfinite(loss_total), torch.tensor(not grads_finite, device=device)]).float()
    status = all_reduce_sum(torch.cat([loss_total.float().view(1), bad])).cpu()  # on the group's device
    if status[1] > 0:
        return float(loss_total.item()), "loss"
    if status[2] > 0:
        return float(loss_total.item()), "gradients"
    if tc.clip_grad is not None:
        torch.nn.utils.clip_grad_norm_(params, tc.clip_grad)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.iteration += 1
    return float(status[0].item()), None


def _next_batch(stream: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """The next batch; a bad file met in a DataLoader worker becomes one line with a hint, not the
    worker's traceback."""
    try:
        return next(stream)
    except UserError as e:  # DataError and ImageError are UserErrors; workers re-raise them with their traceback
        lines = [line for line in str(e).strip().splitlines() if line.strip()]
        reason = lines[-1].split(": ", 1)[-1] if lines and "Traceback" in str(e) else (lines[-1] if lines else str(e))
        raise DataError(f"{reason} (run `ssformer check-data CONFIG` to list every bad file at once)") from None


def _grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))


def first_non_finite(run: Run) -> str | None:
    """The first weight, buffer or optimiser-state tensor holding NaN or inf, or None: a checkpoint
    is only written (or kept as the last good one) when everything in it is finite."""
    for name, tensor in run.model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return f"weight {name}"
    for index, state in run.optimizer.state.items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
                return f"optimiser state {key} of a {tuple(index.shape)} parameter"
    return None


class LossWatch:
    """Flags a finite loss far above its running level, a divergence that has not reached NaN yet:
    more than ``factor`` times the median of the last ``window`` losses (once that many are seen)."""

    def __init__(self, window: int = 50, factor: float = 100.0):
        self.window, self.factor, self.recent = window, factor, collections.deque(maxlen=window)

    def far_above(self, loss: float) -> float | None:
        """The running median when ``loss`` is far above it (then the loss is not added), else None."""
        level = statistics.median(self.recent) if len(self.recent) == self.window else None
        if level is not None and loss > self.factor * max(level, 1e-8):
            return level
        self.recent.append(loss)
        return None


def _diverged(progress: Progress, log: JsonLog, latest: Path, what: str, iteration: int, lr: float) -> TrainingDiverged:
    progress.close()
    good = load_checkpoint(latest)["iteration"] if latest.is_file() else None
    where = (f"the last good checkpoint {latest} (iteration {good}) was kept: --resume restarts from it"
             if good is not None else "no checkpoint had been written yet")
    message = (f"training diverged at iteration {iteration} (lr {lr:.3g}): {what}; stopped without saving; "
               f"{where}. Lower train.lr, set train.clip_grad (e.g. 1.0) or check the data (ssformer check-data).")
    log.write({"event": "diverged", "iter": iteration, "message": message})
    log.close()
    return TrainingDiverged(message)


def _evaluate(run: Run, eval_set, config: TrainingConfig, device: torch.device, dist_info: DistInfo,
              log: JsonLog, progress: Progress) -> dict[str, Any]:
    """Evaluate, log and print; ``best.pt`` when the mIoU improved."""
    tc = config.train
    settings = replace(config.eval, tta=False)  # periodic evaluation without test-time augmentation
    results = evaluate(run.model, eval_set, settings, precision=amp_precision(tc.amp, device), dist_info=dist_info,
                       progress=tc.progress and sys.stderr.isatty())  # off a terminal the log has its one line
    if tc.bn_eval:
        _set_bn_eval(run.model)
    record = {"event": "eval", "iter": run.iteration, **results}
    log.write(record)
    if dist_info.is_main:
        progress.write(f"iter {run.iteration}: mIoU {100 * results['mIoU']:.2f}  aAcc {100 * results['aAcc']:.2f}"
                           f"  mAcc {100 * results['mAcc']:.2f}")
    if results["mIoU"] > run.best["mIoU"]:
        run.best = {"mIoU": float(results["mIoU"]), "iter": run.iteration}
        state = checkpoint_state(run, device, dist_info)
        if dist_info.is_main:
            save_checkpoint(state, Path(config.work_dir) / "best.pt")
    return record


# --- the loop -------------------------------------------------------------------------------------
def _prepare_work_dir(config: TrainingConfig, start: Start, echo: Callable[[str], object]) -> None:
    """Create the work directory (emptied of an earlier run when overwriting) and write ``config.yaml``."""
    work_dir = Path(config.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if start.overwrite:
        removed = clear_earlier_run(work_dir)
        if removed:
            echo(f"--overwrite: deleted the earlier run's {', '.join(removed)} in {work_dir}")
    for stale in remove_stale_temporaries(work_dir):
        echo(f"removed {stale}, left by a write that was interrupted")
    (work_dir / "config.yaml").write_text(yaml.safe_dump(_to_primitive(config.to_dict()), sort_keys=False))


def _begin(run: Run, start: Start, latest: Path, seed: int, device: torch.device, dist_info: DistInfo,
           echo: Callable[[str], object]) -> None:
    """Continue ``latest`` (weights, optimiser, RNG states) or seed this process's dropout streams."""
    if start.resume:
        resume_run(run, latest, device, dist_info)
        if dist_info.is_main:
            echo(f"resumed from {latest} at iteration {run.iteration}")
    else:
        torch.manual_seed(seed + dist_info.rank)  # per-rank dropout / drop-path streams


def _train(config: TrainingConfig, start: Start, echo, device: torch.device, dist_info: DistInfo) -> dict[str, Any]:
    tc = config.train
    work_dir, latest, iters = Path(config.work_dir), Path(config.work_dir) / "latest.pt", tc.iters
    set_cpu_threads(tc.num_threads)
    # Data first: a wrong root or option fails before the model is built.
    train_set, first_part = build_train_dataset(config)
    eval_set = build_eval_dataset(config)
    parts = train_set.datasets if isinstance(train_set, ConcatSeeded) else [train_set]
    criterion = build_criterion(tc.loss_terms(), tc.ohem, first_part.num_classes, first_part.ignore_index,
                                lambda method: class_weights(method, parts), echo if dist_info.is_main else None)
    if tc.warmup_iters >= tc.iters and dist_info.is_main:
        echo(f"warning: train.warmup_iters={tc.warmup_iters} is not shorter than train.iters={tc.iters}: "
             f"the learning rate never reaches train.lr={tc.lr:g}")
    model = build_training_model(config, first_part, device, dist_info, echo)
    run = Run(model, build_optimizer(model, tc.lr, tc.weight_decay, tc.betas, tc.eps, tc.no_decay_keys),
              build_grad_scaler(tc.amp, device))
    _begin(run, start, latest, tc.seed, device, dist_info, echo)
    net = wrap_for_ddp(model, device, dist_info)
    stream = build_loader(config, train_set, run.iteration, dist_info, device)
    stream = itertools.chain([_next_batch(stream)], stream)  # bad data stops the run before it writes anything
    if dist_info.is_main:
        _prepare_work_dir(config, start, echo)
    log = JsonLog(work_dir / "log.jsonl", dist_info.is_main, keep_until=run.iteration if start.resume else None)
    progress = Progress(log, iters, run.iteration, tc.log_interval, tc.progress and dist_info.is_main,
                        echo if dist_info.is_main else None)
    last_eval: dict[str, Any] | None = None
    watch = LossWatch()
    model.train()
    if tc.bn_eval:
        _set_bn_eval(model)
    while run.iteration < iters:
        lr = poly_warmup_lr(run.iteration, tc.lr, iters, tc.power, tc.min_lr, tc.warmup_iters,
                            tc.warmup_ratio)
        loss, diverged = train_step(run, net, criterion, stream, lr, config, device, dist_info)
        if diverged is not None:
            what = f"the loss is {loss}" if diverged == "loss" else "the gradients hold NaN or inf"
            raise _diverged(progress, log, latest, what, run.iteration + 1, lr)
        it = run.iteration
        level = watch.far_above(loss / dist_info.world_size)
        if level is not None:
            raise _diverged(progress, log, latest, f"the loss jumped to {loss / dist_info.world_size:.4g}, more than "
                            f"{watch.factor:g}x its running level {level:.4g}", it, lr)
        progress.step(it, lr, loss / dist_info.world_size)
        writes = it % tc.eval_interval == 0 or it % tc.checkpoint_interval == 0 or it == iters
        bad = first_non_finite(run) if writes else None
        if bad is not None:
            raise _diverged(progress, log, latest, f"{bad} is not finite", it, lr)
        if it % tc.eval_interval == 0 or it == iters:
            last_eval = _evaluate(run, eval_set, config, device, dist_info, log, progress)
        if it % tc.checkpoint_interval == 0 or it == iters:
            save_checkpoints(run, work_dir, tc.keep_checkpoints, device, dist_info)
    progress.close()
    if dist_info.is_main:
        model.save_pretrained(work_dir / "model")
    log.close()
    return {"iterations": run.iteration, "best": run.best, "last_eval": last_eval, "work_dir": str(work_dir),
            "rank": dist_info.rank, "world_size": dist_info.world_size}
