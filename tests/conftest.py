"""Test configuration: float64, strict promotion and rank promotion errors (tests only)."""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

import os  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402

# cli.main() called in-process must not turn on the persistent compilation cache for the whole
# test session (tests of the switch remove this variable with monkeypatch).
os.environ.setdefault("REDS_JAX_NO_COMPILE_CACHE", "1")

# benchmarks/ is not part of the package: its modules are imported by path in the benchmark tests
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
