"""pytest settings for the tests and the doctests (``pytest`` collects both, see pyproject.toml):
float64, strict dtype promotion and rank-promotion errors. Library code never sets these; every
``>>>`` example in the package must also pass without them (plain ``import jax``)."""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
