"""``python -m reds_jax ...`` is the ``reds-jax`` command line (:mod:`reds_jax.jobs.cli`)."""

import sys

from reds_jax.jobs.cli import main

if __name__ == "__main__":
    sys.exit(main())
