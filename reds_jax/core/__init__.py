"""The numeric core of reds_jax: plain callables in, arrays out.

It imports no flax, no optax (``invert`` imports it when called), no model and no job module.
Modules: :mod:`~reds_jax.core.jacobians` (exact Jacobians and Grams), :mod:`~reds_jax.core.linalg`
(small shared linear algebra), :mod:`~reds_jax.core.rayleigh` (dense direction systems),
:mod:`~reds_jax.core.matrix_free` (Gram-vector products and block LOBPCG),
:mod:`~reds_jax.core.traverse` (directions and traversals), :mod:`~reds_jax.core.baselines`
(linear peers), :mod:`~reds_jax.core.invert` (GAN inversion).
"""
