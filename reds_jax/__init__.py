"""reds_jax: Rayleigh EigenDirections (REDs) in JAX.

Public API: :func:`jacobian`, :func:`gram`, :func:`solve_rayleigh`, :func:`directions`,
:func:`traverse` (solver objects :class:`Dense` / :class:`MatrixFree`, fallback counts in
:class:`Diagnostics`), :func:`invert`, and the :mod:`reds_jax.features` / :mod:`reds_jax.generators`
namespaces (imported on first use, so ``import reds_jax`` loads no network and no flax).

Module map (one line each; boundaries: core below features/generators below jobs/evaluation;
the full map and the layer rules are in ``docs/architecture.md``):

* ``core/``: the numeric core, plain callables only (no flax, models or jobs).
  ``jacobians`` exact Jacobians and Grams; ``linalg`` small shared linear algebra; ``rayleigh``
  dense direction systems; ``lobpcg`` block LOBPCG on products; ``matrix_free`` Gram-vector
  product pencils; ``solvers`` the Dense / MatrixFree objects and diagnostics; ``traverse`` the
  step rule, the per-latent traversal and the public directions/traverse; ``control`` path
  control (feature-space steps, drift corrector); ``baselines`` linear peers; ``invert`` GAN
  inversion.
* ``features/``: pure ``image -> vector`` functions (closed form, face-api, ArcFace, rooms nets).
* ``generators/``: generator modules, the procedural rooms oracle, StyleGAN2 (``stylegan2_nets``,
  ``stylegan2_checkpoint``, the ``stylegan2_convert`` / ``stylegan2_ada`` converters).
* ``formats/``: checkpoint readers without torch or TensorFlow (``torch_zip``, ``ada_pickle``,
  ``tfjs``).
* ``jobs/``: the job ``config`` (resolved once), model registry and feature specs (``models``), the
  compiled ``experiment``, ``augment``, ``inversion`` of image files, the ``cli``.
* ``evaluation/``: ``metrics``, quality ``suites`` (each a ``Case``), the suite ``runner``,
  ``report``, ``judge``.
* ``train/``: training scripts of the shipped models; ``weights/``: the shipped weights;
  ``assets``: registry-package assets; ``imageio``: PNG grids; ``_io``: atomic writes, sha256 and
  the converted-weights cache used by every writer.

>>> import subprocess, sys
>>> subprocess.run([sys.executable, "-c", "import sys, reds_jax; print('flax' in sys.modules)"],
...                capture_output=True, text=True, check=True).stdout.strip()
'False'
"""

import importlib as _importlib

from reds_jax.core.invert import Inversion as Inversion
from reds_jax.core.invert import invert as invert
from reds_jax.core.jacobians import gram as gram
from reds_jax.core.jacobians import jacobian as jacobian
from reds_jax.core.rayleigh import solve_rayleigh as solve_rayleigh
from reds_jax.core.solvers import Dense as Dense
from reds_jax.core.solvers import Diagnostics as Diagnostics
from reds_jax.core.solvers import MatrixFree as MatrixFree
from reds_jax.core.traverse import Directions as Directions
from reds_jax.core.traverse import Trajectories as Trajectories
from reds_jax.core.traverse import directions as directions
from reds_jax.core.traverse import traverse as traverse

__version__ = "0.1.0"

_LAZY = ("features", "generators")


def __getattr__(name: str):
    if name in _LAZY:
        return _importlib.import_module(f"reds_jax.{name}")
    raise AttributeError(f"module 'reds_jax' has no attribute {name!r}")


__all__ = [
    "Dense",
    "Diagnostics",
    "Directions",
    "Inversion",
    "MatrixFree",
    "Trajectories",
    "directions",
    "features",
    "generators",
    "gram",
    "invert",
    "jacobian",
    "solve_rayleigh",
    "traverse",
]
