#!/usr/bin/env bash
# The GPU path end to end, in under 10 minutes on a GPU machine (docs/gpu.md):
#   1. the CUDA entries of the device-parametrised tests and the CUDA-only ones;
#   2. short fp16 and bf16 trainings, each killed (SIGKILL) after a checkpoint, resumed, and compared
#      with an uninterrupted run;
#   3. a 2-process torchrun (NCCL, SyncBatchNorm; needs 2 GPUs) that must not warn about gradient
#      strides or an undestroyed process group;
#   4. eval (fp16, bf16) and predict (dtype auto) on CUDA;
#   5. `ssformer benchmark` and benchmarks/compare.py (when the official venv exists) on CUDA.
# `--cpu` runs the CPU-possible parts in CI size (bf16 training with kill and resume, a 2-process
# gloo torchrun, eval, predict of 4 images, a tiny-model benchmark); tests/tools/test_gpu_check.py
# runs that mode.
#
# Usage: tools/gpu_check.sh [--cpu] [--out DIR]
# Environment: PYTHON (default python3), OFFICIAL_PYTHON (default /tmp/ssformer-official/bin/python),
# SSFORMER_SHARED (default ../shared: reference/official.py and data/CamVid/test for compare).
# Every step's output goes to OUT/logs/STEP.log; OUT/summary.txt lists PASS / FAIL / SKIP per step.
# The exit status is 1 when any step failed.
set -uo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
DEVICE=cuda
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) DEVICE=cpu ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (use --cpu, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done
OUT="${OUT:-$(mktemp -d -t gpu_check.XXXXXX)}"
mkdir -p "$OUT/logs"
PY="${PYTHON:-python3}"
OFFICIAL_PYTHON="${OFFICIAL_PYTHON:-/tmp/ssformer-official/bin/python}"
SHARED="${SSFORMER_SHARED:-$REPO/../shared}"  # official.py (reference/) and CamVid images for compare
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
cd "$REPO"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
FAILED=0

note() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME COMMAND...: run it, log its output, record PASS/FAIL with its wall time.
step() {
  local name="$1"; shift
  local start=$SECONDS
  echo "--- $name"
  if "$@" > "$OUT/logs/$name.log" 2>&1; then
    note "PASS $name ($((SECONDS - start)) s)"
  else
    note "FAIL $name (exit $?, $((SECONDS - start)) s): see $OUT/logs/$name.log"
    tail -n 15 "$OUT/logs/$name.log"
    FAILED=1
  fi
}

skip() { note "SKIP $1: $2"; }

SAMPLE="$("$PY" -c 'from ssformer.engine.config import sample_root; print(sample_root())')" || {
  echo "gpu_check.sh: cannot import ssformer with $PY" >&2; exit 1; }

if [ "$DEVICE" = cuda ]; then
  "$PY" - > "$OUT/environment.txt" 2>&1 <<'EOF' || { cat "$OUT/environment.txt"; echo "gpu_check.sh: no usable CUDA device (run with --cpu)" >&2; exit 1; }
import torch
from ssformer.devices import cuda_bf16_native
assert torch.cuda.is_available(), "torch.cuda.is_available() is False"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"  cuda:{i} {p.name}, capability {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB, "
          f"native bf16: {cuda_bf16_native(i)}")
EOF
  GPUS="$("$PY" -c 'import torch; print(torch.cuda.device_count())')"
  BF16="$("$PY" -c 'from ssformer.devices import cuda_bf16_native; print(int(cuda_bf16_native(0)))')"
  AMPS="fp16"; [ "$BF16" = 1 ] && AMPS="fp16 bf16"
  ITERS=60; CKPT=5; PREDICT_IMAGES=1000
else
  "$PY" -c 'import torch; print(f"torch {torch.__version__}, CPU mode")' > "$OUT/environment.txt" 2>&1
  GPUS=0; AMPS="bf16"; ITERS=10; CKPT=3; PREDICT_IMAGES=4
fi
cat "$OUT/environment.txt" | tee -a "$SUMMARY"

# The tiny model and data of tests/engine/conftest.py, as CLI overrides.
TINY=(--set model.embed_dim=8 --set "model.depths=[1,1,1,1]" --set "model.num_heads=[1,1,2,2]"
      --set model.window_size=4 --set model.decoder_dim=8 --set model.drop_path_rate=0.1 --set model.dropout=0.1
      --set "data.train_transform.crop_size=[32,32]" --set "data.test_transform.img_scale=[64,48]"
      --set train.batch_size=2 --set train.num_workers=0 --set train.warmup_iters=2 --set train.lr=1.0e-3
      --set train.log_interval=1 --set train.eval_interval=1000 --set train.progress=false
      --set "train.iters=$ITERS" --set "train.checkpoint_interval=$CKPT" --set train.keep_checkpoints=100)
CLI=("$PY" -m ssformer.cli.main)

# --- 1. tests ---------------------------------------------------------------------------------
if [ "$DEVICE" = cuda ]; then
  # the CUDA entries of the device-parametrised tests and the CUDA-only ones (the CPU entries run in CI)
  step tests env SSFORMER_TEST_DEVICES=cuda timeout 300 "$PY" -m pytest -q -p no:cacheprovider --durations=12 \
    tests/engine tests/models/test_exactness.py tests/models/test_model.py tests/inference/test_export.py \
    tests/inference/test_sliding.py tests/analysis/test_benchmark.py tests/test_devices.py tests/test_precision.py tests/test_distributed.py
else
  skip tests "the CPU entries run in the normal test suite"
fi

# --- 2. training with kill and resume ---------------------------------------------------------
train_kill_resume() {  # AMP: straight run, killed run, resumed run; losses and weights compared
  local amp="$1" work="$OUT/train-$1"
  "${CLI[@]}" train --work-dir "$work/straight" "${TINY[@]}" --set "train.device=$DEVICE" --set "train.amp=$amp" || return 1
  "${CLI[@]}" train --work-dir "$work/killed" "${TINY[@]}" --set "train.device=$DEVICE" --set "train.amp=$amp" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null && [ ! -e "$work/killed/iter_$CKPT.pt" ]; do sleep 0.02; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid"
  local rc=$?
  if [ -e "$work/killed/model" ] || [ "$rc" -ne 137 ]; then
    echo "the run was not killed mid-way (exit $rc)"; return 1
  fi
  echo "killed with SIGKILL after the checkpoint of iteration $CKPT"
  "${CLI[@]}" train --work-dir "$work/killed" "${TINY[@]}" --set "train.device=$DEVICE" --set "train.amp=$amp" \
    --resume | tee "$work/resume.out" || return 1
  grep -q "resumed from" "$work/resume.out" || return 1
  "$PY" - "$work" "$DEVICE" "$amp" "$ITERS" <<'EOF'
import json, re, sys
import torch
from ssformer.engine.checkpoint import load_checkpoint
work, device, amp, iters = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
a, b = load_checkpoint(f"{work}/straight/latest.pt"), load_checkpoint(f"{work}/killed/latest.pt")
assert a["iteration"] == b["iteration"] == iters, (a["iteration"], b["iteration"])
assert bool(b["scaler"]) == (amp == "fp16"), b["scaler"]
start = int(re.search(r"at iteration (\d+)", open(f"{work}/resume.out").read()).group(1))
assert start < iters, f"killed after the last checkpoint (iteration {start}): nothing was resumed"
def losses(run):  # per iteration; the resumed run's where the killed one had logged it too
    records = [json.loads(line) for line in open(f"{work}/{run}/log.jsonl")]
    return {r["iter"]: r["loss"] for r in records if r["event"] == "train"}
la, lb = losses("straight"), losses("killed")
assert sorted(lb) == list(range(1, iters + 1))
worst = max((a["model"][k].float() - b["model"][k].float()).abs().max().item() for k in a["model"])
first = abs(lb[start + 1] / la[start + 1] - 1)
later = max(abs(lb[i] / la[i] - 1) for i in range(start + 1, iters + 1))
print(f"{amp} on {device}: resumed at iteration {start}; loss of iteration {start + 1} vs the uninterrupted "
      f"run: relative difference {first:.3g} (largest later {later:.3g}); largest weight difference {worst:.3g}")
if device == "cpu":
    assert worst == 0 and later == 0  # bit-identical
else:  # GPU kernels are not bit-deterministic and AdamW amplifies it; a wrong resume changes the batch
    assert first < 1e-3 and later < 5e-2 and all(torch.isfinite(v).all() for v in b["model"].values()
                                                 if v.is_floating_point())
EOF
}
for amp in $AMPS; do
  step "train-$amp-kill-resume" train_kill_resume "$amp"
done
if [ "$DEVICE" = cuda ] && [ "$BF16" = 1 ]; then
  # a bf16 run continued with fp16 (its empty loss-scaler state is not loaded)
  bf16_then_fp16() {
    local work="$OUT/train-bf16-then-fp16"
    "${CLI[@]}" train --work-dir "$work" "${TINY[@]}" --set train.device=cuda --set train.amp=bf16 \
      --set "train.iters=$CKPT" || return 1
    "${CLI[@]}" train --work-dir "$work" "${TINY[@]}" --set train.device=cuda --set train.amp=fp16 --resume
  }
  step train-bf16-resume-as-fp16 bf16_then_fp16
fi

# --- 3. two processes -------------------------------------------------------------------------
two_processes() {
  local work="$OUT/torchrun" extra=()
  [ "$DEVICE" = cuda ] && extra=(--set train.sync_bn=true)
  OMP_NUM_THREADS=1 "$PY" -m torch.distributed.run --standalone --nproc-per-node 2 -m ssformer.cli.main \
    train --work-dir "$work" "${TINY[@]}" --set "train.device=$DEVICE" "${extra[@]}" 2>&1 | tee "$work.out"
  [ "${PIPESTATUS[0]}" -eq 0 ] || return 1
  if grep -E "Grad strides do not match|destroy_process_group\(\) was not called|has NOT been destroyed" "$work.out"; then
    echo "warnings above"; return 1
  fi
  "$PY" -c "
from ssformer.engine.checkpoint import load_checkpoint
s = load_checkpoint('$work/latest.pt')
assert s['world_size'] == 2 and len(s['rng']) == 2 and s['iteration'] == $ITERS, (s['world_size'], s['iteration'])
print('2 processes: world_size', s['world_size'], 'iterations', s['iteration'])"
}
if [ "$DEVICE" = cuda ] && [ "$GPUS" -lt 2 ]; then
  skip torchrun-2-processes "NCCL needs one GPU per process and this machine has $GPUS"
else
  step torchrun-2-processes two_processes
fi

# --- 4. eval and predict ----------------------------------------------------------------------
first_amp="${AMPS%% *}"
for amp in $AMPS; do
  step "eval-$amp" "${CLI[@]}" eval sample --data-root "$SAMPLE" --checkpoint "$OUT/train-$first_amp/killed/latest.pt" \
    --device "$DEVICE" --amp "$amp" "${TINY[@]}" --out "$OUT/eval-$amp.json"
done
predict() {
  local images=()
  mapfile -t images < <(find "$SAMPLE/images" -name '*.png' | sort | head -n "$PREDICT_IMAGES")
  "${CLI[@]}" predict "${images[@]}" --checkpoint "$OUT/train-$first_amp/killed/model" --out "$OUT/predict" \
    --device "$DEVICE" --dtype auto --img-scale 64 48 || return 1
  local outputs
  outputs=$(find "$OUT/predict" -name '*.png' ! -name legend.png | wc -l)
  echo "${#images[@]} images, $outputs masks"
  [ "${#images[@]}" -gt 0 ] && [ "${#images[@]}" -eq "$outputs" ]
}
step predict predict

# --- 5. benchmarks ----------------------------------------------------------------------------
if [ "$DEVICE" = cuda ]; then
  step benchmark-train-fp16 "${CLI[@]}" benchmark ssformer_swin_t --device cuda --dtype fp16 --train --batch 2 \
    --runs 5 --json
  for dtype in fp32 $AMPS; do
    step "benchmark-inference-$dtype" "${CLI[@]}" benchmark ssformer_swin_b --device cuda --dtype "$dtype" \
      --runs 10 --json
  done
  if "$OFFICIAL_PYTHON" -c "import mmseg" > /dev/null 2>&1; then
    images="$SHARED/data/CamVid/test"
    [ -d "$images" ] || images="$SAMPLE/images"
    step compare "$OFFICIAL_PYTHON" benchmarks/compare.py --device cuda --no-hf --runs 10 --num-images 4 \
      --images "$images" --official-dir "$SHARED/reference" --train --train-model ssformer_swin_b --train-batch 8 \
      --train-runs 5 --json "$OUT/compare.json"
  else
    skip compare "no official implementation at $OFFICIAL_PYTHON (shared/reference/setup_official.sh; set OFFICIAL_PYTHON)"
  fi
else
  step benchmark-train-bf16 "${CLI[@]}" benchmark --checkpoint "$OUT/train-bf16/killed/model" --device cpu \
    --dtype bf16 --train --size 64 64 --batch 2 --runs 1 --warmup 0 --no-flops --json
fi

note "results in $OUT"
exit "$FAILED"
