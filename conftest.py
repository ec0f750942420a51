"""pytest settings for the tests and the doctests (``pytest`` collects both, see pyproject.toml):
float64, strict dtype promotion and rank-promotion errors. Library code never sets these; every
``>>>`` example in the package must also pass without them (plain ``import jax``)."""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


import gc  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop every compiled program after each test module: each of the two test workers runs about
    half of the suite in one process, and the executables of ~100 modules otherwise pile up (a
    full one-process run peaked at 6 GB and once ended in a segmentation fault inside jaxlib after
    ~650 tests; the same files pass alone)."""
    yield
    jax.clear_caches()
    gc.collect()
