"""Side by side, in one process: this project, the official SSformer (mmseg 0.24.1) and a Hugging Face peer.

All three get the same weights (an official-format state dict: random but non-trivial, as in
tools/make_fixtures.py, or ``--checkpoint`` an official ``.pth``), the same inputs and the same
thread count. Calls are interleaved round by round (one call of each contender per round, the
starting contender rotating), so background load hits all of them alike; medians are reported,
with the minor page faults and system CPU time per call (``getrusage``).

Contenders (inference, eval mode, ``torch.inference_mode``):

* ``ours-fp32``: ``model.eval(); model(x)``;  ``ours-bf16``: ``model.to(torch.bfloat16)``, ``model(x.bfloat16())``;
* ``official-fp32``: ``EncoderDecoder.encode_decode(x, None)``;  ``official-bf16``: the same under
  ``torch.autocast("cpu", torch.bfloat16)`` (the official code has no bf16 mode of its own);
* ``hf-fp32`` / ``hf-bf16``: ``transformers.SwinBackbone`` with the same config and mapped weights,
  followed by this project's decoder (same weights) and the final resize; bf16 via autocast.

``--engines`` adds the CPU engines, fed the same weights through this project's export
(``benchmarks/common.py``): ``onnxruntime-fp32``, ``openvino-fp32`` / ``-bf16`` (bf16 where the CPU has
it natively) and NNCF's ``openvino-int8`` (``-bf16``), calibrated on ``--calib-images`` images of
``--calib``. They need the ``openvino`` extra in the interpreter that runs this script.

``--train`` adds a training step (forward, cross-entropy, backward, AdamW) of ours vs official
for ``--train-model`` (default SSformer-T) at batch ``--train-batch``, fp32 and bf16 autocast.

Accuracy: max |logit difference| vs the official fp32 logits on real images (CamVid test
images resized to the benchmark size, ImageNet-normalised), and the share of pixels whose argmax
class agrees with the official fp32 one.

Run with the official venv's interpreter, this repository on the path (see docs/benchmarks.md):

    /tmp/ssformer-official/bin/python benchmarks/compare.py --threads 2 --runs 7

``--device cuda`` runs every contender on the GPU (timings synchronise the device around each call;
the page-fault and system-time columns then describe only the host side). ``bf16`` there means
bf16 weights for ours and bf16 autocast for the others, as on the CPU.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from common import interleaved, summarise  # noqa: E402

import ssformer  # noqa: E402
from ssformer.engine.loss import segmentation_loss  # noqa: E402
from ssformer.models.ssformer import VARIANTS  # noqa: E402

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
VARIANT_OFFICIAL = {  # our variant -> build_official kwargs
    name: dict(embed_dims=v["embed_dim"], depths=v["depths"], num_heads=v["num_heads"],
               drop_path_rate=v["drop_path_rate"]) for name, v in VARIANTS.items()}


# --- models ------------------------------------------------------------------------------------
def build_official_model(variant: str, num_classes: int, checkpoint: Path | None, seed: int):
    from make_fixtures import randomise  # tools/make_fixtures.py: non-trivial random official weights
    from official import build_official

    model = build_official(num_classes=num_classes, **VARIANT_OFFICIAL[variant])
    if checkpoint is not None:
        model.load_state_dict(ssformer.checkpoints.unwrap(ssformer.checkpoints.torch_load(checkpoint)), strict=True)
    else:
        randomise(model, torch.Generator().manual_seed(seed))
    return model.eval()


def hf_state_dict(ours: dict[str, torch.Tensor], depths: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """This project's encoder weights in ``transformers.SwinBackbone`` naming.

    HF keeps q/k/v separate and concatenates the 2x2 patch-merging neighbourhood position-major
    [(0,0), (1,0), (0,1), (1,1)], where this project (like mmseg) is channel-major over
    [(0,0), (0,1), (1,0), (1,1)], so those tensors are permuted.
    """
    out = {"swin.embeddings.patch_embeddings.projection.weight": ours["encoder.patch_embed.proj.weight"],
           "swin.embeddings.patch_embeddings.projection.bias": ours["encoder.patch_embed.proj.bias"],
           "swin.embeddings.norm.weight": ours["encoder.patch_embed.norm.weight"],
           "swin.embeddings.norm.bias": ours["encoder.patch_embed.norm.bias"]}
    for i, depth in enumerate(depths):
        src, dst = f"encoder.stages.{i}", f"swin.encoder.layers.{i}"
        for j in range(depth):
            s, d = f"{src}.blocks.{j}", f"{dst}.blocks.{j}"
            for part in ("weight", "bias"):
                q, k, v = ours[f"{s}.attn.qkv.{part}"].chunk(3)
                out.update({f"{d}.attention.q_proj.{part}": q, f"{d}.attention.k_proj.{part}": k,
                            f"{d}.attention.v_proj.{part}": v,
                            f"{d}.attention.o_proj.{part}": ours[f"{s}.attn.proj.{part}"],
                            f"{d}.layernorm_before.{part}": ours[f"{s}.norm1.{part}"],
                            f"{d}.layernorm_after.{part}": ours[f"{s}.norm2.{part}"],
                            f"{d}.mlp.fc1.{part}": ours[f"{s}.mlp.fc1.{part}"],
                            f"{d}.mlp.fc2.{part}": ours[f"{s}.mlp.fc2.{part}"]})
            out[f"{d}.attention.relative_position_bias.relative_position_bias_table"] = \
                ours[f"{s}.attn.relative_position_bias_table"]
        if f"{src}.downsample.reduction.weight" in ours:
            order = torch.tensor([0, 2, 1, 3])  # HF slot k' holds our kernel position order[k']
            weight = ours[f"{src}.downsample.reduction.weight"]
            c = weight.shape[1] // 4
            out[f"{dst}.downsample.reduction.weight"] = weight.view(-1, c, 4)[:, :, order].transpose(1, 2).reshape(-1, 4 * c)
            for part in ("weight", "bias"):
                norm = ours[f"{src}.downsample.norm.{part}"]
                out[f"{dst}.downsample.norm.{part}"] = norm.view(c, 4)[:, order].t().reshape(-1)
        for part in ("weight", "bias"):
            out[f"hidden_states_norms.stage{i + 1}.{part}"] = ours[f"encoder.norms.{i}.{part}"]
    return out


class HFSwinSSformer(torch.nn.Module):
    """``transformers.SwinBackbone`` + this project's decoder: the same model built from HF's Swin."""

    def __init__(self, ours: ssformer.SSformer):
        super().__init__()
        from transformers import SwinBackbone, SwinConfig

        c = ours.config
        config = SwinConfig(image_size=224, patch_size=4, num_channels=c.in_channels, embed_dim=c.embed_dim,
                            depths=list(c.depths), num_heads=list(c.num_heads), window_size=c.window_size,
                            mlp_ratio=c.mlp_ratio, qkv_bias=True, hidden_act="gelu", drop_path_rate=0.0,
                            out_features=[f"stage{i + 1}" for i in range(len(c.depths))])
        self.backbone = SwinBackbone(config)
        missing, unexpected = self.backbone.load_state_dict(hf_state_dict(ours.state_dict(), c.depths), strict=False)
        if unexpected or any(not k.startswith("swin.layernorm.") for k in missing):
            raise RuntimeError(f"HF weight mapping incomplete: missing {missing}, unexpected {unexpected}")
        self.decoder = copy.deepcopy(ours.decoder)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.decoder(list(self.backbone(images).feature_maps))
        return F.interpolate(logits, size=images.shape[2:], mode="bilinear", align_corners=False)


# --- inputs ------------------------------------------------------------------------------------
def real_images(folder: Path, count: int, height: int, width: int) -> list[torch.Tensor]:
    """The first ``count`` PNG/JPEG images of ``folder``, resized and ImageNet-normalised, (1, 3, H, W)."""
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})[:count]
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    out = []
    for path in files:
        image = Image.open(path).convert("RGB").resize((width, height), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)
        out.append(((x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None])[None])
    return out


# --- timing ------------------------------------------------------------------------------------
def inference(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
              autocast: bool = False) -> Callable[[], torch.Tensor]:
    def call() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            return fn(x)

    return call


def official_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """mmseg's decode-head loss: logits already resized to the label size, then cross-entropy."""
    return F.cross_entropy(logits.float(), labels, ignore_index=255)


def train_step(forward: Callable[[torch.Tensor], torch.Tensor], loss_fn, params, x: torch.Tensor,
               labels: torch.Tensor, autocast: bool) -> Callable[[], float]:
    optimizer = torch.optim.AdamW(params, lr=6e-5, weight_decay=0.01, fused=True)

    def call() -> float:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = forward(x)
        loss = loss_fn(logits, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return call


def print_table(title: str, stats: dict[str, dict[str, float]], baseline: str, others: list[str]) -> None:
    print(f"\n{title}")
    for name, s in stats.items():
        print(f"  {name:<16} median {s['median_s'] * 1e3:8.1f} ms   p90 {s['p90_s'] * 1e3:8.1f} ms   "
              f"page faults {s['median_page_faults']:7.0f}, system {s['median_system_s'] * 1e3:4.0f} ms per call")
    for name in others:
        if name in stats and baseline in stats:
            print(f"  speed-up {baseline} vs {name}: {stats[name]['median_s'] / stats[baseline]['median_s']:.2f}x")


# --- main --------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ssformer_swin_b", choices=sorted(VARIANTS))
    parser.add_argument("--num-classes", type=int, default=150)
    parser.add_argument("--checkpoint", type=Path, help="an official SSformer .pth (default: random weights)")
    parser.add_argument("--size", nargs=2, type=int, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7, help="timed rounds (default 7)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "CamVid" / "test",
                        help="real images for the accuracy check (default: CamVid test)")
    parser.add_argument("--num-images", type=int, default=4)
    parser.add_argument("--no-hf", action="store_true", help="leave out the Hugging Face peer")
    parser.add_argument("--no-inference", action="store_true", help="only the training step")
    parser.add_argument("--only", nargs="+", metavar="CONTENDER",
                        help="time only these inference contenders (e.g. official-fp32 alone: the others "
                             "share the process's allocator state with it)")
    parser.add_argument("--engines", action="store_true", help="add OpenVINO (fp32, bf16, int8) and ONNX Runtime")
    parser.add_argument("--calib", type=Path, default=REPO.parent / "shared" / "data" / "CamVid" / "train",
                        help="with --engines: images to calibrate int8 on (default: CamVid train)")
    parser.add_argument("--calib-images", type=int, default=8)
    parser.add_argument("--train", action="store_true", help="also time a training step, ours vs official")
    parser.add_argument("--train-model", default="ssformer_swin_t", choices=sorted(VARIANTS))
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument("--train-runs", type=int, default=5)
    parser.add_argument("--official-dir", type=Path, default=REPO.parent / "shared" / "reference",
                        help="folder holding official.py (build_official)")
    parser.add_argument("--json", type=Path, help="also write all numbers to this JSON file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu); every contender runs there")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available")
    if args.engines and device.type != "cpu":
        parser.error("--engines: the CPU engines run on --device cpu")
    sys.path.insert(0, str(args.official_dir))
    if not args.no_hf:  # before official.py, which puts a spec-less torchvision stub into sys.modules
        import transformers  # noqa: F401

    torch.set_num_threads(args.threads)
    height, width = args.size
    report: dict[str, object] = {
        "command": " ".join([Path(sys.executable).name] + sys.argv), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "device": str(device), "load_average_start": os.getloadavg()}
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {report.get('gpu', device)}, "
          f"load average {os.getloadavg()}")

    if not args.no_inference:
        official = build_official_model(args.model, args.num_classes, args.checkpoint, args.seed)
        ours = ssformer.create_model(args.model, num_classes=args.num_classes)
        load = ssformer.load_weights(ours, official.state_dict(), strict=True)
        assert not load.missing and not load.unexpected
        ours.eval()
        hf = None if args.no_hf else HFSwinSSformer(ours).eval().to(device)
        official, ours = official.to(device), ours.to(device)
        ours_bf16 = copy.deepcopy(ours).to(torch.bfloat16)

        images = [x.to(device) for x in real_images(args.images, args.num_images, height, width)]
        engines = {}
        if args.engines:
            from common import engine_runners

            calibration = real_images(args.calib, args.calib_images, height, width)
            engines = engine_runners(ours, (height, width), calibration, args.threads)
        accuracy: dict[str, dict[str, float]] = {}
        with torch.inference_mode():
            for i, x in enumerate(images):
                reference = official.encode_decode(x, None)
                classes = reference.argmax(1)
                outputs = {"ours-fp32": ours(x), "ours-bf16": ours_bf16(x.bfloat16()).float()}
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    outputs["official-bf16"] = official.encode_decode(x, None).float()
                if hf is not None:
                    outputs["hf-fp32"] = hf(x)
                    with torch.autocast(device.type, dtype=torch.bfloat16):
                        outputs["hf-bf16"] = hf(x).float()
                outputs.update({name: run(x) for name, run in engines.items()})
                for name, logits in outputs.items():
                    entry = accuracy.setdefault(name, {"max_abs_logit_diff": 0.0, "argmax_agreement": []})
                    entry["max_abs_logit_diff"] = max(entry["max_abs_logit_diff"],
                                                      (logits - reference).abs().max().item())
                    entry["argmax_agreement"].append((logits.argmax(1) == classes).float().mean().item())
                if i == 0:
                    report["reference_logit_abs_max"] = reference.abs().max().item()
        print(f"\naccuracy vs official fp32 on {len(images)} images from {args.images} "
              f"(|official logits| up to {report['reference_logit_abs_max']:.2f}):")
        for name, entry in accuracy.items():
            agreement = entry["argmax_agreement"]
            entry["argmax_agreement_min"] = min(agreement)
            entry["argmax_agreement_mean"] = sum(agreement) / len(agreement)
            print(f"  {name:<16} max |diff| {entry['max_abs_logit_diff']:.3g}   argmax agreement "
                  f"mean {100 * entry['argmax_agreement_mean']:.3f}%  min {100 * entry['argmax_agreement_min']:.3f}%")
        report["accuracy"] = accuracy

        x = images[0]
        contenders = {"ours-fp32": inference(ours, x), "official-fp32": inference(lambda t: official.encode_decode(t, None), x),
                      "ours-bf16": inference(ours_bf16, x.bfloat16()),
                      "official-bf16": inference(lambda t: official.encode_decode(t, None), x, autocast=True)}
        if hf is not None:
            contenders.update({"hf-fp32": inference(hf, x), "hf-bf16": inference(hf, x, autocast=True)})
        contenders.update({name: inference(run, x) for name, run in engines.items()})
        if args.only:
            unknown = sorted(set(args.only) - set(contenders))
            if unknown:
                parser.error(f"--only: unknown contenders {unknown}; choose from {sorted(contenders)}")
            contenders = {name: call for name, call in contenders.items() if name in args.only}
        stats = summarise(interleaved(contenders, args.runs, args.warmup, device))
        report["inference"] = stats
        print_table(f"inference {args.model} 1x3x{height}x{width}, {args.runs} interleaved rounds", stats,
                    "ours-fp32", ["official-fp32", "hf-fp32"])
        for peer in ("official-fp32", "official-bf16", "hf-bf16"):
            if peer in stats and "ours-bf16" in stats:
                print(f"  speed-up ours-bf16 vs {peer}: {stats[peer]['median_s'] / stats['ours-bf16']['median_s']:.2f}x")
        for name in engines:
            if name in stats and "official-fp32" in stats:
                print(f"  speed-up {name} vs official-fp32: "
                      f"{stats['official-fp32']['median_s'] / stats[name]['median_s']:.2f}x")
        del official, ours, ours_bf16, hf, engines

    if args.train:
        official = build_official_model(args.train_model, args.num_classes, None, args.seed).train()
        ours = ssformer.create_model(args.train_model, num_classes=args.num_classes)
        ssformer.load_weights(ours, official.state_dict(), strict=True)
        ours.train()
        official, ours = official.to(device), ours.to(device)
        generator = torch.Generator().manual_seed(args.seed)
        x = torch.randn(args.train_batch, 3, height, width, generator=generator).to(device)
        labels = torch.randint(0, args.num_classes, (args.train_batch, height, width), generator=generator).to(device)
        contenders = {}
        for autocast in (False, True):
            tag = "bf16-autocast" if autocast else "fp32"
            # each side's own training computation: ours is the trainer's (1/4-size logits, banded loss)
            contenders[f"ours-{tag}"] = train_step(ours.forward_logits, segmentation_loss, ours.parameters(),
                                                   x, labels, autocast)
            contenders[f"official-{tag}"] = train_step(lambda t: official.encode_decode(t, None), official_loss,
                                                       official.parameters(), x, labels, autocast)
        stats = summarise(interleaved(contenders, args.train_runs, args.warmup, device))
        report["train"] = stats
        print_table(f"training step {args.train_model} {args.train_batch}x3x{height}x{width} "
                    f"(forward, cross-entropy, backward, AdamW), {args.train_runs} interleaved rounds", stats,
                    "ours-fp32", ["official-fp32"])
        print(f"  speed-up ours-bf16-autocast vs official-bf16-autocast: "
              f"{stats['official-bf16-autocast']['median_s'] / stats['ours-bf16-autocast']['median_s']:.2f}x")

    report["load_average_end"] = os.getloadavg()
    print(f"\nload average at the end {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
