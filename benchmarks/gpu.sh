#!/usr/bin/env bash
# Benchmarks on an accelerator: installs what is missing, then
#   bash benchmarks/gpu.sh                  # paper-scale rows (StyleGAN2 1024 / 256 px: W, W+, S),
#                                           # most important first, ~7 minutes in all
#   bash benchmarks/gpu.sh traverse [ARGS]  # the traversal grid (`bench --profile gpu`), ~5 minutes
# and writes paper_scale_gpu_{1024,256}.json/.md (or gpu.json/.md) to $OUT (the device tool's
# output folder) or benchmarks/results/. Every paper-scale row runs in its own process and the
# JSON/Markdown are rewritten as each row finishes, so a run cut short keeps its finished rows.
#
# JAX: the one already installed is used when it sees an accelerator (the lent machines ship JAX with
# the CUDA plugin, flax, optax and chex, and cannot reach a package registry). Otherwise, wheels in
# .whl/ (carried; see /work/.library/device/README.md) are installed offline, and as a last resort
# `pip install "jax[cuda12]"`. reds_jax itself runs from the checkout (PYTHONPATH), so no build
# backend is needed. Face DCGAN weights (traverse mode): a carried cache folder .reds_cache/ (a copy
# of ~/.cache/reds_jax: `mkdir -p .reds_cache && cp -r ~/.cache/reds_jax/pip .reds_cache/`, listed
# in .git/info/exclude) is used as REDS_JAX_CACHE; without it that row reports an error and the rest
# run. The paper-scale rows need no weights (seeded random weights in the real architectures).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-benchmarks/results}
export PYTHONUNBUFFERED=1
# float32 matrix products in full float32 (XLA's GPU default may use TF32, ~1e-3 relative error,
# which the Cholesky whitening of near-singular Grams does not tolerate); override to compare.
export JAX_DEFAULT_MATMUL_PRECISION=${JAX_DEFAULT_MATMUL_PRECISION:-highest}

has_accelerator() {
  "$PY" -c 'import jax, sys; sys.exit(jax.default_backend() == "cpu")' 2>/dev/null
}

if ! has_accelerator; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  else
    "$PY" -m pip install -q "jax[cuda12]"
  fi
fi
has_accelerator || { echo "gpu.sh: JAX sees no accelerator (backend cpu); stopping." >&2; exit 1; }
"$PY" -c 'import flax, optax, chex, numpy' 2>/dev/null || "$PY" -m pip install -q flax optax chex numpy
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ -d .reds_cache ]; then export REDS_JAX_CACHE=$PWD/.reds_cache; fi

MACHINE="$("$PY" -c 'import jax; d = jax.devices()[0]; print(f"{d.device_kind} ({d.platform}), jax {jax.__version__}")'), matmul precision $JAX_DEFAULT_MATMUL_PRECISION"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
mkdir -p "$OUT_DIR"
MODE=paper
case "${1:-}" in paper | traverse) MODE=$1; shift ;; esac
if [ "$MODE" = traverse ]; then
  "$PY" benchmarks/bench_traverse.py --profile gpu --machine "$MACHINE" --out "$OUT_DIR" --name gpu \
    --ref-seeds 2 --timeout 240 "$@" 2>&1 | tee "$OUT_DIR/gpu.log"
  # augmentation throughput per shard format (formats whose packages are missing are reported as skipped)
  "$PY" benchmarks/bench_augment.py --out "$OUT_DIR" --name augment_throughput_gpu --seeds 512 \
    --shard-size 64 --batch-size 64 --size 64 --machine "$MACHINE" 2>&1 | tee "$OUT_DIR/augment_gpu.log"
  exit 0
fi
# Paper scale (issue 14). 1024 px first: the target row (W+, identity + face box fixed, N = 8),
# then W and its exact reference, S, the reference loop; then 256 px. --budget stops starting rows
# once that many seconds have passed (device time is ~8 minutes in all).
PAPER=(benchmarks/paper_scale.py --machine "$MACHINE" --out "$OUT_DIR" --nice 0 --steps 3)
"$PY" "${PAPER[@]}" --scale 1024 --n 8 --experiments hair --name paper_scale_gpu_1024 \
  --timeout 170 --budget 300 "$@" 2>&1 | tee "$OUT_DIR/paper_scale_gpu_1024.log" || true
"$PY" "${PAPER[@]}" --scale 256 --n 32 --experiments hair,frequency --name paper_scale_gpu_256 \
  --timeout 120 --budget 120 "$@" 2>&1 | tee "$OUT_DIR/paper_scale_gpu_256.log" || true
