"""Training scripts for the shipped models: ``python -m reds_jax.train gan|regressor|segmenter|judge``.

Data come from :func:`reds_jax.generators.sample_dataset` (fresh renders per step, keyed by
``fold_in(key(seed), step)``), optimisation from optax, checkpoints from flax msgpack (runs resume
from the newest checkpoint in ``--out``). Importing :mod:`reds_jax` does not import this package.
"""
