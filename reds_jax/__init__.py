"""reds_jax: Rayleigh EigenDirections (REDs) in JAX.

Public API: :func:`jacobian`, :func:`gram`, :func:`solve_rayleigh`, :func:`directions`,
:func:`traverse`, :func:`invert`, :func:`enable_compile_cache`, and the :mod:`reds_jax.features` / :mod:`reds_jax.generators`
namespaces (imported on first use, so ``import reds_jax`` loads no network and no flax).

Module map (one line each; boundaries: core below features/generators below jobs/evaluation):

* ``core/``: the numeric core, plain callables only (no flax, models or jobs).
  ``jacobians`` exact Jacobians and Grams; ``linalg`` small shared linear algebra; ``rayleigh``
  dense direction systems; ``matrix_free`` Gram-vector products and block LOBPCG; ``traverse``
  directions and traversals; ``baselines`` linear peers; ``invert`` GAN inversion.
* ``features/``: pure ``image -> vector`` functions (closed form, face-api, ArcFace, rooms nets).
* ``generators/``: generator modules, the procedural rooms oracle, StyleGAN2 and its converters.
* ``formats/``: checkpoint readers without torch or TensorFlow (torch zip/pickle, tfjs).
* ``jobs/``: job config, model registry and feature specs (``models``), the compiled
  ``experiment``, ``augment``, ``inversion`` of image files, the ``cli``.
* ``evaluation/``: ``metrics``, quality ``suites``, the suite ``runner``, ``report``, ``judge``.
* ``train/``: training scripts of the shipped models; ``weights/``: the shipped weights;
  ``assets``: registry-package assets; ``imageio``: PNG grids.

>>> import reds_jax, sys
>>> "flax" in sys.modules or reds_jax.traverse.__name__
'traverse'

Public names are imported on first use, so ``import reds_jax`` alone loads no jax.
"""

import importlib as _importlib

__version__ = "0.1.0"

# Public name -> defining module. Everything is imported on first use (PEP 562), so
# ``import reds_jax`` (and the ``reds-jax`` CLI's ``--help``) loads neither jax nor flax.
_EXPORTS = {
    "Directions": "reds_jax.core.traverse",
    "Inversion": "reds_jax.core.invert",
    "Trajectories": "reds_jax.core.traverse",
    "directions": "reds_jax.core.traverse",
    "enable_compile_cache": "reds_jax.compile_cache",
    "gram": "reds_jax.core.jacobians",
    "invert": "reds_jax.core.invert",
    "jacobian": "reds_jax.core.jacobians",
    "solve_rayleigh": "reds_jax.core.rayleigh",
    "traverse": "reds_jax.core.traverse",
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


__all__ = [
    "Directions",
    "Inversion",
    "Trajectories",
    "directions",
    "enable_compile_cache",
    "features",
    "generators",
    "gram",
    "invert",
    "jacobian",
    "solve_rayleigh",
    "traverse",
]
