"""Writes tests/fixtures/faceapi_reference.npz: the ORIGINAL face-api nets (tfjs, Node) on fixed images.

Needs Node 20 and npm. The tfjs packages are pure JS (no native binaries) and go into a temporary
folder (or pass ``--node-prefix`` with ``@tensorflow/tfjs@4.22.0``,
``@tensorflow/tfjs-backend-wasm@4.22.0`` and ``@vladmandic/face-api@1.7.15`` installed); the model
files come from ``reds_jax.assets.fetch``. Run from the repository root:

    python scripts/make_faceapi_fixture.py

Inputs: three faces of the face DCGAN (latents from ``numpy.random.default_rng(2026)``, saved as
uint8) and a seeded non-square uint8 pattern (exercises the square padding), plus small
float patterns for the TF1 bilinear resize. scripts/make_faceapi_fixture.mjs runs face-api on the
CPU backend and reports descriptor [128], landmarks [136] (face-api's post-processed relative
coordinates), age and gender probabilities [2].
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "faceapi_reference.npz"
PACKAGES = (
    "@tensorflow/tfjs@4.22.0",
    "@tensorflow/tfjs-backend-wasm@4.22.0",
    "@vladmandic/face-api@1.7.15",
)
RESIZE_CASES = (  # name, input shape, output size
    ("down", (5, 7, 2), (3, 4)),
    ("up", (5, 7, 2), (8, 11)),
    ("x150", (3, 64, 1), (4, 150)),
)


def _inputs() -> tuple[dict[str, np.ndarray], dict[str, tuple[np.ndarray, tuple[int, int]]]]:
    import jax.numpy as jnp

    from reds_jax.generators import face_dcgan

    rng = np.random.default_rng(2026)
    gan = face_dcgan()
    images = {}
    for i in range(3):
        z = jnp.asarray(rng.standard_normal(gan.latent_dim), jnp.float32)
        img = np.asarray(gan.generator(z))
        images[f"face{i}"] = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    images["pattern_48x64"] = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    resize = {
        name: (rng.random(shape).astype(np.float32) * 255.0, size)
        for name, shape, size in RESIZE_CASES
    }
    return images, resize


def _node_prefix(given: pathlib.Path | None, tmp: pathlib.Path) -> pathlib.Path:
    if given is not None:
        return given
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("npm is not on PATH; install Node 20 (npm included) or pass --node-prefix.")
    (tmp / "package.json").write_text('{"name": "faceapi-fixture", "private": true}\n')
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--silent", *PACKAGES], cwd=tmp, check=True
    )
    return tmp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node-prefix", type=pathlib.Path, help="folder with node_modules/")
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args()

    from reds_jax import assets

    for stem in ("recognition", "landmark68", "age_gender"):
        manifest = assets.fetch(f"face_api_{stem}_manifest")
        assets.fetch(f"face_api_{stem}_weights")
    model_dir = manifest.parent
    images, resize = _inputs()
    with tempfile.TemporaryDirectory(prefix="faceapi_fixture_") as tmp_name:
        tmp = pathlib.Path(tmp_name)
        prefix = _node_prefix(args.node_prefix, tmp)
        request = {
            "images": [
                {"name": k, "shape": list(v.shape), "data": v.ravel().tolist()}
                for k, v in images.items()
            ],
            "resize": [
                {"name": k, "shape": list(x.shape), "data": x.ravel().tolist(), "size": list(s)}
                for k, (x, s) in resize.items()
            ],
        }
        (tmp / "in.json").write_text(json.dumps(request))
        script = ROOT / "scripts" / "make_faceapi_fixture.mjs"
        subprocess.run(
            [
                "node",
                str(script),
                str(prefix),
                str(model_dir),
                str(tmp / "in.json"),
                str(tmp / "out.json"),
            ],
            check=True,
        )
        result = json.loads((tmp / "out.json").read_text())

    arrays: dict[str, np.ndarray] = {
        "versions": np.asarray([result["tfjs"], result["faceapi"], result["backend"]]),
        "names": np.asarray(list(images)),
    }
    for rec in result["images"]:
        name = rec["name"]
        arrays[f"{name}/image"] = images[name]
        arrays[f"{name}/descriptor"] = np.asarray(rec["descriptor"], np.float32)
        arrays[f"{name}/landmarks"] = np.asarray(rec["landmarks"], np.float32)
        arrays[f"{name}/age"] = np.asarray(rec["age"], np.float32)
        arrays[f"{name}/gender"] = np.asarray(rec["gender"], np.float32)
    for rec in result["resize"]:
        x, _ = resize[rec["name"]]
        arrays[f"resize/{rec['name']}/input"] = x
        arrays[f"resize/{rec['name']}/output"] = np.asarray(rec["data"], np.float32).reshape(
            rec["shape"]
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes): {sorted(arrays)}")


if __name__ == "__main__":
    main()
