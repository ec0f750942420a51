"""reds_jax: Rayleigh EigenDirections (REDs) in JAX.

Public API: a :class:`Problem` (generator, what to vary and fix, the method), solved at a latent by
:func:`directions` or followed by :func:`traverse` with a solver (:class:`Dense`,
:class:`MatrixFree`, or a :class:`Solver` of your own), a step controller (:class:`FixedStep`,
:class:`FeatureStep`) and an optional :class:`Corrector`; every result carries
:class:`Diagnostics` with a :class:`RESULTS` status. Also :func:`jacobian`, :func:`gram`,
:func:`solve_rayleigh`, :func:`invert`, :func:`enable_compile_cache`, and the
:mod:`reds_jax.features` / :mod:`reds_jax.generators` namespaces (imported on first use, so
``import reds_jax`` loads no network and no flax).

Module map (one line each; boundaries: core below features/generators below jobs/evaluation;
the full map and the layer rules are in ``docs/architecture.md``):

* ``core/``: the numeric core, plain callables only (no flax, models or jobs).
  ``jacobians`` exact Jacobians and Grams; ``linalg`` small shared linear algebra; ``rayleigh``
  dense direction systems; ``lobpcg`` block LOBPCG on products; ``matrix_free`` Gram-vector
  product pencils; ``problem`` the Problem; ``solvers/`` the Solver interface (``base``),
  ``dense`` and ``matrix_free`` solvers, diagnostics and status; ``control`` step controllers and the corrector; ``path``
  the step rule and the per-latent path loop; ``api`` the public directions/traverse (validation,
  vmap, jit, sharding); ``baselines`` linear peers; ``invert`` GAN inversion; ``presets`` the
  reference's settings; ``validate`` shared argument checks.
* ``features/``: pure ``image -> vector`` functions (closed form, face-api, ArcFace, rooms nets).
* ``generators/``: generator modules, the procedural rooms oracle, StyleGAN2 (``stylegan2_nets``,
  ``stylegan2_checkpoint``, the ``stylegan2_convert`` / ``stylegan2_ada`` converters).
* ``formats/``: checkpoint readers without torch or TensorFlow (``torch_zip``, ``ada_pickle``,
  ``tfjs``).
* ``jobs/``: the job ``config`` (resolved once), model registry and feature specs (``models``), the
  compiled ``experiment``, ``augment`` (its ``shards``, ``manifest`` and ``distributed`` runtime),
  ``inversion`` of image files, the ``cli``.
* ``app/``: the interactive explorer (``explorer`` logic, ``ui`` page; ``reds-jax app``).
* ``evaluation/``: ``metrics``, quality ``suites`` (each a ``Case``), the suite ``runner``,
  ``report``, ``judge``.
* ``train/``: training scripts of the shipped models; ``weights/``: the shipped weights;
  ``assets``: registry-package assets; ``imageio``: PNG grids; ``compile_cache``: the
  persistent compilation cache (opt-in); ``_io``: atomic writes, sha256 and
  the converted-weights cache used by every writer.

>>> import subprocess, sys
>>> code = "import sys, reds_jax; print('jax' in sys.modules, 'flax' in sys.modules)"
>>> subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split()
['False', 'False']

Public names are imported on first use (PEP 562), so ``import reds_jax`` alone loads no jax.
"""

import importlib as _importlib

__version__ = "0.1.0"

# Public name -> defining module. Everything is imported on first use (PEP 562), so
# ``import reds_jax`` (and the ``reds-jax`` CLI's ``--help``) loads neither jax nor flax.
_EXPORTS = {
    "Corrector": "reds_jax.core.control",
    "Dense": "reds_jax.core.solvers",
    "Diagnostics": "reds_jax.core.solvers",
    "Directions": "reds_jax.core.api",
    "FeatureStep": "reds_jax.core.control",
    "FixedStep": "reds_jax.core.control",
    "Inversion": "reds_jax.core.invert",
    "MatrixFree": "reds_jax.core.solvers",
    "Problem": "reds_jax.core.problem",
    "RESULTS": "reds_jax.core.solvers",
    "Solver": "reds_jax.core.solvers",
    "Start": "reds_jax.core.solvers",
    "Step": "reds_jax.core.solvers",
    "Trajectories": "reds_jax.core.path",
    "directions": "reds_jax.core.api",
    "enable_compile_cache": "reds_jax.compile_cache",
    "gram": "reds_jax.core.jacobians",
    "invert": "reds_jax.core.invert",
    "jacobian": "reds_jax.core.jacobians",
    "solve_rayleigh": "reds_jax.core.rayleigh",
    "traverse": "reds_jax.core.api",
    "traverse_one": "reds_jax.core.path",
}
_LAZY = ("features", "generators")


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(_importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later look-ups skip __getattr__
        return value
    if name in _LAZY:
        return _importlib.import_module(f"reds_jax.{name}")
    raise AttributeError(f"module 'reds_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = sorted([*_EXPORTS, *_LAZY])
