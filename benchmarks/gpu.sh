#!/usr/bin/env bash
# Traversal benchmark on an accelerator: installs what is missing, runs `bench --profile gpu`
# and writes gpu.json + gpu.md to $OUT (the device tool's output folder) or benchmarks/results/.
#
#   bash benchmarks/gpu.sh                 # on the GPU machine, from anywhere in the checkout
#   bash benchmarks/gpu.sh --only conv     # extra arguments go to the benchmark
#
# JAX: the one already installed is used when it sees an accelerator (the lent machines ship JAX with
# the CUDA plugin, flax, optax and chex, and cannot reach a package registry). Otherwise, wheels in
# .whl/ (carried; see /work/.library/device/README.md) are installed offline, and as a last resort
# `pip install "jax[cuda12]"`. reds_jax itself runs from the checkout (PYTHONPATH), so no build
# backend is needed. Face DCGAN weights: a carried cache folder .reds_cache/ (a copy of
# ~/.cache/reds_jax: `mkdir -p .reds_cache && cp -r ~/.cache/reds_jax/pip .reds_cache/`, listed in
# .git/info/exclude) is used as REDS_JAX_CACHE; without it that row reports an error and the rest run.
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
"$PY" benchmarks/bench_traverse.py --profile gpu --machine "$MACHINE" --out "$OUT_DIR" --name gpu \
  --ref-seeds 2 --timeout 240 "$@" 2>&1 | tee "$OUT_DIR/gpu.log"
# augmentation throughput per shard format (formats whose packages are missing are reported as skipped)
"$PY" benchmarks/bench_augment.py --out "$OUT_DIR" --name augment_throughput_gpu --seeds 512 \
  --shard-size 64 --batch-size 64 --size 64 --machine "$MACHINE" 2>&1 | tee "$OUT_DIR/augment_gpu.log"
