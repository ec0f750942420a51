"""reds_jax: Rayleigh EigenDirections (REDs) in JAX."""

__version__ = "0.1.0"
