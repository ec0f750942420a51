"""Test configuration: float64, strict promotion and rank promotion errors (tests only)."""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

import pathlib  # noqa: E402
import sys  # noqa: E402

# benchmarks/ is not part of the package: its modules are imported by path in the benchmark tests
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
