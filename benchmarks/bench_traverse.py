"""Traversal benchmark (thin wrapper): ``python benchmarks/bench_traverse.py --profile cpu``.

The logic lives in :mod:`reds_jax.bench` so that ``reds-jax bench`` can call the same ``main``.
"""

import sys

from reds_jax.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
