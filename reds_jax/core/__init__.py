"""The numeric core of reds_jax: plain callables in, arrays out.

It imports no flax, no optax (``invert`` imports it when called), no model and no job module.
Modules: :mod:`~reds_jax.core.jacobians` (exact Jacobians and Grams), :mod:`~reds_jax.core.linalg`
(small shared linear algebra), :mod:`~reds_jax.core.rayleigh` (dense direction systems),
:mod:`~reds_jax.core.lobpcg` (block LOBPCG on products), :mod:`~reds_jax.core.matrix_free`
(Gram-vector product pencils), :mod:`~reds_jax.core.problem` (``Problem``),
:mod:`~reds_jax.core.solvers` (``Solver``, ``Dense`` / ``MatrixFree``, ``Diagnostics``,
``RESULTS``), :mod:`~reds_jax.core.control` (step controllers, corrector),
:mod:`~reds_jax.core.path` (the step rule, ``traverse_one``), :mod:`~reds_jax.core.api`
(``directions``, ``traverse``), :mod:`~reds_jax.core.baselines`
(linear peers), :mod:`~reds_jax.core.invert` (GAN inversion).
"""
