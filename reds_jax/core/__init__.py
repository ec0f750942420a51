"""The numeric core of reds_jax: plain callables in, arrays out.

It imports no flax, no optax (``invert`` imports it when called), no model and no job module.
Modules: :mod:`~reds_jax.core.jacobians` (exact Jacobians and Grams), :mod:`~reds_jax.core.linalg`
(small shared linear algebra), :mod:`~reds_jax.core.rayleigh` (dense direction systems),
:mod:`~reds_jax.core.lobpcg` (block LOBPCG on products), :mod:`~reds_jax.core.matrix_free`
(Gram-vector product pencils), :mod:`~reds_jax.core.solvers` (``Dense`` / ``MatrixFree`` and
``Diagnostics``), :mod:`~reds_jax.core.traverse` (the step rule, ``traverse_one``, directions and
traversals), :mod:`~reds_jax.core.baselines`
(linear peers), :mod:`~reds_jax.core.invert` (GAN inversion).
"""
