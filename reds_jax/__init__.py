"""reds_jax: Rayleigh EigenDirections (REDs) in JAX.

Public API: :func:`jacobian`, :func:`gram`, :func:`solve_rayleigh`, :func:`directions`,
:func:`traverse`, and the :mod:`reds_jax.features` / :mod:`reds_jax.generators` namespaces.
"""

from . import features as features
from . import generators as generators
from .invert import Inversion as Inversion
from .invert import invert as invert
from .jacobians import gram as gram
from .jacobians import jacobian as jacobian
from .rayleigh import solve_rayleigh as solve_rayleigh
from .traverse import Directions as Directions
from .traverse import Trajectories as Trajectories
from .traverse import directions as directions
from .traverse import traverse as traverse

__version__ = "0.1.0"

__all__ = [
    "Directions",
    "Inversion",
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
