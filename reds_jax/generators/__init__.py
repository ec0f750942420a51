"""Generators: pure callables ``z [d] -> image [H, W, C]`` in [0, 1], and the Flax modules behind them."""

__all__: list[str] = []
