"""Copies trained weights into ``reds_jax/weights/`` and records their sha256.

``python -m reds_jax.train.export gan|regressor|segmenter|judge|flow RUN_DIR`` copies the run's
``g_ema.msgpack`` (GAN), ``ema.msgpack`` (flow) or ``weights.msgpack`` (feature nets) to the shipped file name and rewrites
that file's entry of :data:`reds_jax.weights.SHA256` in ``reds_jax/weights/__init__.py``.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import shutil

from reds_jax._io import atomic_write, sha256_file
from reds_jax.weights import SHA256, WEIGHTS_DIR

FILES = {
    "gan": ("g_ema.msgpack", "rooms_gan.msgpack"),
    "regressor": ("weights.msgpack", "rooms_regressor.msgpack"),
    "segmenter": ("weights.msgpack", "rooms_segmenter.msgpack"),
    "judge": ("weights.msgpack", "rooms_judge.msgpack"),
    "flow": ("ema.msgpack", "rooms_flow.msgpack"),
}


def export(kind: str, run_dir: str | pathlib.Path) -> str:
    """Ships ``run_dir``'s weights for ``kind``; returns the new sha256."""
    src_name, dst_name = FILES[kind]
    src = pathlib.Path(run_dir) / src_name
    if not src.is_file():
        raise FileNotFoundError(
            f"{src} not found; train first with `python -m reds_jax.train {kind}`."
        )
    dst = WEIGHTS_DIR / dst_name
    shutil.copyfile(src, dst)
    digest = sha256_file(dst)
    init = WEIGHTS_DIR / "__init__.py"
    text = init.read_text()
    pattern = re.compile(rf'("{re.escape(dst_name)}": )"[0-9a-f]*"')
    if not pattern.search(text):
        raise RuntimeError(f"no SHA256 entry for {dst_name} in {init}.")
    atomic_write(init, pattern.sub(rf'\1"{digest}"', text).encode())
    SHA256[dst_name] = digest
    return digest


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(prog="python -m reds_jax.train.export")
    p.add_argument("kind", choices=sorted(FILES))
    p.add_argument("run_dir")
    a = p.parse_args(argv)
    print(FILES[a.kind][1], export(a.kind, a.run_dir))


if __name__ == "__main__":
    main()
