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
                feature_distance=old["feature_distance"] if "feature_distance" in old else None,
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


MIN_PSNR = 20.0
"""Reconstructions below this PSNR (dB) are named in a warning with what to try."""


def save_labelled_pairs(
    targets: np.ndarray,
    recons: np.ndarray,
    labels: Sequence[str],
    captions: Sequence[str],
    path: str | os.PathLike,
    *,
    scale: int = 1,
) -> pathlib.Path:
    """A PNG with one column per image: its label, the target above its reconstruction, a caption.

    Args:
      targets: uint8 ``[N, H, W, 3]``.
      recons: uint8 ``[N, H, W, 3]``.
      labels: ``[N]`` column titles (file names; shortened to fit).
      captions: ``[N]`` text under each reconstruction (e.g. its PSNR).
      path: PNG destination.
      scale: integer upscaling of every tile.

    Returns:
      The path written.

    >>> import tempfile, pathlib
    >>> t = np.zeros((2, 8, 8, 3), np.uint8)
    >>> p = save_labelled_pairs(t, t, ["a.png", "b.png"], ["1 dB", "2 dB"],
    ...                         pathlib.Path(tempfile.mkdtemp()) / "x.png")
    >>> p.is_file()
    True
    """
    from PIL import Image, ImageDraw

    n, h, w = targets.shape[:3]
    tw, th, pad, line = w * scale, h * scale, 4, 12
    side = 8 * line  # row titles
    tile_w = max(tw, 7 * 10)
    canvas = Image.new(
        "RGB", (side + n * (tile_w + pad) + pad, line + 2 * (th + pad) + line + 2 * pad), "white"
    )
    draw = ImageDraw.Draw(canvas)
    draw.text((2, line + pad + th // 2 - 5), "target", fill="black")
    draw.text((2, line + 2 * pad + th + th // 2 - 5), "reconstruction", fill="black")
    max_chars = max(4, tile_w // 6)
    for i in range(n):
        x = side + pad + i * (tile_w + pad)
        label = labels[i] if len(labels[i]) <= max_chars else labels[i][: max_chars - 1] + "~"
        draw.text((x, 1), label, fill="black")
        for row, img in enumerate((targets[i], recons[i])):
            tile = Image.fromarray(np.asarray(img, np.uint8)).resize((tw, th), Image.NEAREST)
            canvas.paste(tile, (x, line + pad + row * (th + pad)))
        draw.text((x, line + 2 * (th + pad) + 1), captions[i], fill="black")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    atomic_write(path, buf.getvalue())
    return path


def report(res: dict[str, Any], *, min_psnr: float = MIN_PSNR) -> tuple[str, str | None]:
    """The per-image table of an :func:`invert_files` result, and a warning naming weak images.

    Args:
      res: an :func:`invert_files` result (``files``, ``psnr`` and optional ``feature_distance``
        and ``feature``).
      min_psnr: images below this PSNR (dB) are named in the warning.

    Returns:
      ``(table, warning or None)``.

    >>> t, w = report({"files": ["a.png", "b.png"], "psnr": np.array([25.0, 12.0])})
    >>> print(t)
    image  PSNR dB
    a.png     25.0
    b.png     12.0
    >>> w.split(":")[0]
    '1 of 2 image(s) below 20 dB'
    """
    files = [str(f) for f in res["files"]]
    psnr = np.asarray(res["psnr"], np.float64)
    dist = res.get("feature_distance")
    width = max(5, *(len(f) for f in files))
    head = f"{'image':{width}s}  PSNR dB"
    if dist is not None:
        head += f"  {res.get('feature') or 'feature'} distance"
    rows = [head]
    for i, f in enumerate(files):
        row = f"{f:{width}s}  {psnr[i]:7.1f}"
        if dist is not None:
            row += f"  {float(dist[i]):.3g}"
        rows.append(row)
    weak = [f"{files[i]} ({psnr[i]:.1f} dB)" for i in np.flatnonzero(psnr < min_psnr)]
    warning = None
    if weak:
        warning = (
            f"{len(weak)} of {len(files)} image(s) below {min_psnr:g} dB: {', '.join(weak)}. "
            "Try more steps and restarts (--steps 600 --restarts 8), a lower --tol, or an image "
            "closer to what the model generates (the subject centred and cropped like its "
            "training images)."
        )
    return "\n".join(rows), warning


def invert_files(
    model_name: str,
    sources: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    steps: int = 300,
    restarts: int = 4,
    lr: float = 0.08,
    prior_weight: float = 1e-3,
    feature: str | None = None,
    feature_weight: float = 1.0,
    key: int = 0,
    model_args: dict[str, Any] | None = None,
    progress: bool = True,
    tol: float = 1e-3,
    select_after: int | None = None,
) -> dict[str, Any]:
    """Inverts image files with a registered model and writes the results to ``out``.

    Writes ``out/latents.npy`` (``[N, d]``, usable as ``--latents``), ``out/inversion.npz``
    (latents, PSNR, errors, uint8 reconstructions and targets, file names, the feature distance
    when a feature is matched) and ``out/reconstructions.png`` (one labelled column per image:
    file name, target, reconstruction, PSNR). If ``out`` already holds an inversion of the same
    files with the same settings (a sha256 fingerprint), it is reused.

    Args:
      model_name: a name of :data:`reds_jax.jobs.models.MODELS` (``faces``, ``rooms``, ...).
      sources: image files and/or folders.
      out: output folder.
      steps: optimisation steps per restart (at most; see ``tol``).
      restarts: random restarts per image (the best survives after ``select_after`` steps).
      lr: Adam learning rate.
      prior_weight: weight of the latent-norm prior.
      feature: optional feature spec matched too (e.g. ``identity`` for faces).
      feature_weight: its weight.
      key: PRNG seed.
      model_args: passed to the model loader.
      progress: draw a tqdm bar with ETA.
      tol: early stopping on a plateau (see :func:`reds_jax.core.invert.invert`).
      select_after: steps before only the best restart of each image goes on.

    Returns:
      dict with ``latents [N, d]``, ``psnr [N]``, ``files``, ``out``, ``reused``, ``feature``
      and ``feature_distance [N]`` (None without a feature).
    """
    import jax

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
        tol=tol,
        select_after=select_after,
        version=2,  # the optimiser changed (schedule, selection, early stopping)
    )
    fingerprint = _fingerprint(paths, settings)
    npz_path = out / "inversion.npz"
    if npz_path.exists():
        old = _read_previous(npz_path)
        if old["fingerprint"] == fingerprint:
            return dict(old, out=out, reused=True, feature=feature)
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
        lr=lr,
        feature=feat,
        feature_weight=feature_weight,
        prior_weight=prior_weight,
        key=jax.random.split(jax.random.key(key), len(paths)),
        progress=progress,
        tol=tol,
        select_after=select_after,
    )
    from reds_jax import imageio

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
    distance = None
    if feat is not None:
        f = jax.jit(jax.vmap(lambda x: jax.numpy.ravel(feat(x))))
        distance = np.linalg.norm(
            np.asarray(f(res.reconstructions)) - np.asarray(f(jax.numpy.asarray(images))), axis=-1
        )
        arrays["feature_distance"] = distance
    buf = io.BytesIO()
    np.save(buf, latents)
    atomic_write(out / "latents.npy", buf.getvalue())
    atomic_write(npz_path, npz_bytes(arrays, compress=True))
    save_labelled_pairs(
        arrays["targets"],
        arrays["reconstructions"],
        [p.name for p in paths],
        [f"{v:.1f} dB" for v in arrays["psnr"]],
        out / "reconstructions.png",
        scale=max(1, 128 // shape[0]),
    )
    return dict(
        latents=latents,
        psnr=arrays["psnr"],
        files=[p.name for p in paths],
        out=out,
        reused=False,
        feature=feature,
        feature_distance=distance,
    )
