"""Test configuration. The jax settings (float64, strict promotion, rank-promotion errors) are in the
repository's root ``conftest.py`` so that the doctests run under them too; shared test helpers are
in ``tests/helpers.py``."""

import os
import pathlib
import sys

# cli.main() called in-process must not turn on the persistent compilation cache for the whole
# test session (tests of the switch remove this variable with monkeypatch).
os.environ.setdefault("REDS_JAX_NO_COMPILE_CACHE", "1")

# benchmarks/ is not part of the package: its modules are imported by path in the benchmark tests
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))

import helpers  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def toy_model():
    """The toy model (see :func:`helpers.toy_loader`) registered as ``"toy"`` for one test."""
    with helpers.registered_model("toy", helpers.toy_loader) as name:
        yield name
