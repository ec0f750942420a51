"""Invert image files with a registered model: read, fit to the generator's size, invert, save.

Used by ``reds-jax invert`` and by ``--images DIR`` of ``reds-jax traverse`` / ``augment``.

Image handling (documented behaviour, :func:`reds_jax.imageio.read_image`): files are read with
pillow and converted to RGB (grayscale is replicated, alpha is dropped; 16-bit grayscale is divided
by 65535, 8-bit by 255); an image whose aspect ratio differs from the generator's is centre-cropped
to it, then resized with bicubic filtering to the generator's ``H × W``. Folders, broken symlinks,
symlink loops, undecodable files and decompression bombs are refused naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from reds_jax._io import atomic_write, npz_bytes, sha256_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class InversionJobError(ValueError):
    """Unreadable or missing image files (the message names the file and what to pass)."""


def list_images(sources: Sequence[str | os.PathLike]) -> list[pathlib.Path]:
    """Expands files and folders into a sorted list of image files.

    Args:
      sources: image files and/or folders (folders contribute their ``*.png|jpg|jpeg|bmp|webp``).

    Returns:
      Image paths (folders sorted by name, files in the given order).

    Raises:
      InversionJobError: a path does not exist, or no image was found.
    """
    from reds_jax.imageio import not_a_file

    paths: list[pathlib.Path] = []
    for src in sources:
        p = pathlib.Path(src)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InversionJobError(
                    f"folder {p} has no images ({', '.join(IMAGE_SUFFIXES)}); pass a folder of "
                    "PNG/JPEG files."
                )
            for q in found:
                if not q.is_file():
                    raise InversionJobError(
                        f"{q} in folder {p} is {not_a_file(q)}, not an image file; remove or "
                        "rename it, or pass the image files themselves."
                    )
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        elif p.is_symlink():
            raise InversionJobError(f"{p} is {not_a_file(p)}; pass image files or a folder.")
        else:
            raise InversionJobError(f"{p} does not exist; pass image files or a folder of them.")
    if not paths:
        raise InversionJobError("no images given; pass image files or --images DIR.")
    return paths


def load_images(paths: Sequence[pathlib.Path], height: int, width: int) -> np.ndarray:
    """Reads images as float32 ``[N, height, width, 3]`` in [0, 1] (see the module docstring).

    Args:
      paths: image files.
      height: target height.
      width: target width.

    Returns:
      ``[N, height, width, 3]`` float32.

    Raises:
      InversionJobError: a file is not a readable image.
    """
    from reds_jax.imageio import read_image

    out = np.zeros((len(paths), height, width, 3), np.float32)
    for i, path in enumerate(paths):
        try:
            out[i] = read_image(path, height, width)
        except ValueError as err:
            raise InversionJobError(str(err)) from None
    return out


def _fingerprint(paths: Sequence[pathlib.Path], settings: dict[str, Any]) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for p in paths:
        h.update(p.name.encode())
        h.update(bytes.fromhex(sha256_file(p)))
    return h.hexdigest()


def _check_settings(**settings: Any) -> None:
    """Refuses non-integer / non-positive counts and non-finite or out-of-range weights."""
    for name in ("steps", "restarts"):
        v = settings[name]
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise InversionJobError(f"--{name} must be a whole number >= 1; got {v!r}.")
    for name, low in (("lr", "> 0"), ("prior_weight", ">= 0"), ("feature_weight", ">= 0")):
        v = settings[name]
        ok = isinstance(v, int | float | np.floating) and not isinstance(v, bool)
        ok = ok and np.isfinite(v) and (v > 0 if low == "> 0" else v >= 0)
        if not ok:
            flag = "--" + name.replace("_", "-")
            raise InversionJobError(f"{flag} must be a finite number {low}; got {v!r}.")


def _read_previous(npz_path: pathlib.Path) -> dict[str, Any]:
    """A previous run's ``inversion.npz``: fingerprint, latents, psnr, files (checked)."""
    try:
        with np.load(npz_path, allow_pickle=False) as old:
            found = dict(
                fingerprint=str(old["fingerprint"].reshape(-1)[0]),
                latents=old["latents"],
                psnr=old["psnr"],
                files=[str(f) for f in old["files"]],
            )
    except Exception as err:  # noqa: BLE001 - any way a file can be corrupt
        raise InversionJobError(
            f"{npz_path} is not a readable inversion ({type(err).__name__}: {err}); delete it to "
            "invert again, or pass another --out."
        ) from None
    latents = found["latents"]
    if latents.ndim != 2 or len(latents) != len(found["files"]) or not np.isfinite(latents).all():
        raise InversionJobError(
            f"{npz_path} holds latents of shape {latents.shape} for {len(found['files'])} files "
            "(or non-finite values); delete it to invert again, or pass another --out."
        )
    return found


def invert_files(
    model_name: str,
    sources: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    steps: int = 300,
    restarts: int = 4,
    lr: float = 0.05,
    prior_weight: float = 1e-3,
    feature: str | None = None,
    feature_weight: float = 1.0,
    key: int = 0,
    model_args: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Inverts image files with a registered model and writes the results to ``out``.

    Writes ``out/latents.npy`` (``[N, d]``, usable as ``--latents``), ``out/inversion.npz``
    (latents, PSNR, errors, uint8 reconstructions and targets, file names) and
    ``out/reconstructions.png`` (targets above reconstructions). If ``out`` already holds an
    inversion of the same files with the same settings (a sha256 fingerprint), it is reused.

    Args:
      model_name: a name of :data:`reds_jax.jobs.models.MODELS` (``faces``, ``rooms``, ...).
      sources: image files and/or folders.
      out: output folder.
      steps: Adam steps per restart.
      restarts: random restarts per image.
      lr: Adam learning rate.
      prior_weight: weight of the latent-norm prior.
      feature: optional feature spec matched too (e.g. ``identity`` for faces).
      feature_weight: its weight.
      key: PRNG seed.
      model_args: passed to the model loader.
      progress: print progress.

    Returns:
      dict with ``latents [N, d]``, ``psnr [N]``, ``files``, ``out`` and ``reused``.
    """
    import jax
    import optax

    from reds_jax import imageio
    from reds_jax.core.invert import invert
    from reds_jax.jobs import models

    _check_settings(
        steps=steps,
        restarts=restarts,
        lr=lr,
        prior_weight=prior_weight,
        feature_weight=feature_weight,
    )
    paths = list_images(sources)
    out = pathlib.Path(out)
    settings = dict(
        model=model_name,
        model_args=model_args or {},
        steps=steps,
        restarts=restarts,
        lr=lr,
        prior_weight=prior_weight,
        feature=feature,
        feature_weight=feature_weight,
        key=key,
    )
    fingerprint = _fingerprint(paths, settings)
    npz_path = out / "inversion.npz"
    if npz_path.exists():
        old = _read_previous(npz_path)
        if old["fingerprint"] == fingerprint:
            return dict(old, out=out, reused=True)
    model = models.load_model(model_name, **(model_args or {}))
    shape = jax.eval_shape(model.generator, jax.numpy.zeros((model.latent_dim,), np.float32)).shape
    images = load_images(paths, shape[0], shape[1])
    feat = models.parse_feature(feature) if feature else None
    res = invert(
        model.generator,
        images,
        latent_dim=model.latent_dim,
        steps=steps,
        restarts=restarts,
        optimizer=optax.adam(lr),
        feature=feat,
        feature_weight=feature_weight,
        prior_weight=prior_weight,
        key=jax.random.split(jax.random.key(key), len(paths)),
        progress=progress,
        chunk=max(1, min(50, steps)),
    )
    out.mkdir(parents=True, exist_ok=True)
    latents = np.asarray(res.latents, np.float32)
    if not np.isfinite(latents).all():
        bad = [p.name for p, row in zip(paths, latents, strict=True) if not np.isfinite(row).all()]
        raise InversionJobError(
            f"the inversion diverged (non-finite latents for {', '.join(bad[:3])}"
            f"{', ...' if len(bad) > 3 else ''}); pass a smaller --lr (now {lr:g}). Nothing written."
        )
    arrays = dict(
        latents=latents,
        psnr=np.asarray(res.psnr),
        errors=np.asarray(res.errors),
        reconstructions=imageio.to_uint8(res.reconstructions),
        targets=imageio.to_uint8(images),
        files=np.asarray([p.name for p in paths], dtype=str),
        fingerprint=np.asarray(fingerprint),
    )
    buf = io.BytesIO()
    np.save(buf, latents)
    atomic_write(out / "latents.npy", buf.getvalue())
    atomic_write(npz_path, npz_bytes(arrays, compress=True))
    pairs = np.stack([arrays["targets"], arrays["reconstructions"]])  # [2, N, H, W, 3]
    imageio.save_grid(pairs, out / "reconstructions.png", scale=max(1, 128 // shape[0]))
    return dict(
        latents=latents, psnr=arrays["psnr"], files=[p.name for p in paths], out=out, reused=False
    )
