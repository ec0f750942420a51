"""``python -m reds_jax.train gan|regressor|segmenter|judge|flow --out DIR --steps N --seed S``."""

from reds_jax.train.cli import main

if __name__ == "__main__":
    main()
