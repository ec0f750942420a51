"""Jobs built on the core: job configs, the model registry, feature specs, the compiled
experiment, dataset augmentation, inversion of image files and the ``reds-jax`` CLI."""
