"""Quality suites: the vary/fix experiments that ``python -m reds_jax.evaluation.runner`` runs.

A :class:`Case` is one generator with the features to change and to hold, ground-truth
measures where the generator has them, and what the linear peers need (an activation map for
GANSpace, a first-layer weight for SeFa). Suites:

  * ``rooms_oracle`` (procedural rooms, exact factors): ``sofa_pixels`` (fix the sofa's pixels, vary
    all other pixels; the sofa mask is the oracle's exact soft mask at the *current* latent,
    carried as a 4th image channel — a perfect segmenter, differentiated through);
    ``sofa_position`` (fix sofa appearance / vary position through a pixel-statistics proxy: fix the
    row means of the sofa band, which do not change when things slide sideways, and vary its
    column means); ``sofa_look`` (the same, through the shipped regressor CNN: fix its predicted
    sofa look factors, vary its predicted sofa position); ``frequency`` (fix high-pass / vary
    low-pass). Ground-truth factor groups are measured along every path.
  * ``rooms_gan`` (the shipped rooms GAN, no exact factors): ``gan_sofa_pixels`` (the shipped
    segmenter's sofa mask), ``gan_sofa_look`` (the shipped regressor) and ``gan_frequency``; the
    factor groups are *judged* by the separately trained judge network
    (:func:`reds_jax.evaluation.judge.rooms_judge`), never by the networks being fixed.
  * ``rooms_flow`` (the shipped rooms flow-matching model, ``d = 3072``, matrix-free): the three
    ``rooms_gan`` experiments as ``flow_sofa_pixels``, ``flow_sofa_look``, ``flow_frequency``.
  * ``faces`` (the pretrained face DCGAN): ``faces_identity_hair`` (fix face-api identity and
    landmarks, vary the top-of-head box), ``faces_hair`` (fix the face box, vary the top-of-head
    box) and ``faces_frequency``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from reds_jax.evaluation.runner_args import SUITE_NAMES
from reds_jax.features import Feature, highpass, lowpass, region
from reds_jax.generators import rooms as rooms_lib

Array = jax.Array

__all__ = [
    "Case",
    "SUITES",
    "faces_suite",
    "rooms_flow_suite",
    "rooms_gan_suite",
    "rooms_oracle_suite",
]


@dataclasses.dataclass(frozen=True, eq=False)
class Case:
    """One vary/fix experiment on one generator.

    Attributes:
      name: short id (file names). title: one-line description.
      generator: pure ``z [d] -> image [H, W, C]`` (``C`` may carry extra channels, see ``display``).
      latent_dim: ``d``.
      vary: features to change.  fix: features to hold.
      truth: ground-truth measures ``(name, z [d] -> vector, want)``, ``want`` in ``"fix"``/``"vary"``.
      display: ``image -> RGB [H, W, 3]`` for grids.
      pca_fn: activation map ``z [d] -> array`` for GANSpace (None: PCA of the latents).
      sefa_weight: ``[m, d]`` first-layer weight for SeFa (None: SeFa skipped).
      truth_labels: optional ``z [d] -> (labels [k], condition [q])`` ground-truth labels for an
        extra ``supervised-gt`` method.
      delta: target normalised varied change.
      step_scale: multiplies the config's step-size grid (latent norms grow like ``sqrt(d)``).
      notes: Markdown notes for the report.
      solver: the REDs/maxc solver (``"dense"``, or ``"matrix_free"`` for large latents) and
        solver_options: its options (e.g. ``{"cold_iters": 20}``).
    """

    name: str
    title: str
    generator: Callable[[Array], Array]
    latent_dim: int
    vary: tuple[Feature, ...]
    fix: tuple[Feature, ...]
    truth: tuple[tuple[str, Callable[[Array], Array], str], ...] = ()
    display: Callable[[Array], Array] = lambda image: image
    pca_fn: Callable[[Array], Array] | None = None
    sefa_weight: np.ndarray | None = None
    truth_labels: Callable[[Array], tuple[Array, Array]] | None = None
    delta: float = 0.5
    step_scale: float = 1.0
    notes: str = ""
    solver: str = "dense"
    solver_options: dict = dataclasses.field(default_factory=dict)


def _unit_group(oracle, names: Sequence[str]) -> Callable[[Array], Array]:
    idx = np.asarray([rooms_lib.FACTOR_NAMES.index(n) for n in names])
    return lambda z: oracle.unit(z)[idx]


_SOFA_LOOK = ("sofa_width", "sofa_height", "sofa_r", "sofa_g", "sofa_b")
_GEOMETRY = ("sofa_x", "sofa_width", "sofa_height", "lamp_x", "window_x", "stripe_phase")


def _frequency(name: str, what: str, generator, *, scale: float = 1.0, **kw) -> Case:
    """Fix high-pass (σ = 2·scale) / vary low-pass (σ = 4·scale) on ``generator``."""
    return Case(
        name,
        f"{what}: fix high-pass (σ={2 * scale:g}) / vary low-pass (σ={4 * scale:g})",
        generator,
        vary=(lowpass(4.0 * scale),),
        fix=(highpass(2.0 * scale),),
        **kw,
    )


def _regressor_sofa() -> dict[str, tuple[Feature, ...]]:
    """``vary``/``fix`` of the sofa-look experiments: the shipped regressor's sofa_x / sofa look."""
    from reds_jax.features import room_factors

    return {
        "vary": (Feature(room_factors(("sofa_x",)), "regressor sofa_x"),),
        "fix": (Feature(room_factors(_SOFA_LOOK), "regressor sofa look"),),
    }


def rooms_oracle_suite(*, size: int = 64, latent_dim: int = 16, seed: int = 0):
    """The rooms-oracle experiments (``sofa_pixels``, ``sofa_position``, ``frequency``).

    Args:
      size: image size (64 in the report; tests use 16). Filter widths scale with it.
      latent_dim: oracle latent size ``d``.
      seed: oracle seed.

    Returns:
      Tuple of :class:`Case`.
    """
    from reds_jax.generators import rooms_oracle

    oracle = rooms_oracle(latent_dim=latent_dim, seed=seed, size=size)
    p = oracle.params
    w1z = p.w1 @ p.rotation  # [H, d] first layer acting on z
    hidden = lambda z: jnp.tanh(z @ jnp.asarray(w1z.T, z.dtype) + jnp.asarray(p.b1, z.dtype))  # noqa: E731
    sefa = np.concatenate([w1z, p.skip @ p.rotation])  # [H + F, d]
    sofa_idx = [rooms_lib.FACTOR_NAMES.index(n) for n in ("sofa_x", *_SOFA_LOOK)]
    room = tuple(n for i, n in enumerate(rooms_lib.FACTOR_NAMES) if i not in sofa_idx)
    common = dict(latent_dim=latent_dim, pca_fn=hidden, sefa_weight=sefa)

    def with_mask(z):
        scene = rooms_lib.render_scene(oracle.factors(z), size=size)
        return jnp.concatenate([scene.image, scene.masks["sofa"][:, :, None]], axis=-1)

    sofa_px = Feature(lambda im: im[:, :, :3] * im[:, :, 3:], "sofa pixels")
    rest_px = Feature(lambda im: im[:, :, :3] * (1.0 - im[:, :, 3:]), "non-sofa pixels")
    band = slice(int(round(0.55 * size)), int(round(0.95 * size)))
    rows = Feature(lambda im: jnp.mean(im[band], axis=1), "sofa-band row means")
    cols = Feature(lambda im: jnp.mean(im[band], axis=0), "sofa-band column means")
    s = size / 64.0
    pos = ("sofa position", _unit_group(oracle, ("sofa_x",)), "vary")
    look = ("sofa look", _unit_group(oracle, _SOFA_LOOK), "fix")
    return (
        Case(
            "sofa_pixels",
            "rooms oracle: fix sofa pixels (exact soft mask) / vary all other pixels",
            with_mask,
            vary=(rest_px,),
            fix=(sofa_px,),
            truth=(
                ("sofa factors", _unit_group(oracle, ("sofa_x", *_SOFA_LOOK)), "fix"),
                ("room factors", _unit_group(oracle, room), "vary"),
            ),
            display=lambda im: im[:, :, :3],
            notes="Mask = the oracle's exact visible sofa mask at the current latent (4th channel).",
            **common,
        ),
        Case(
            "sofa_position",
            "rooms oracle: fix sofa appearance / vary position (pixel-statistics proxy)",
            oracle.generator,
            vary=(cols,),
            fix=(rows,),
            truth=(pos, look, ("lamp position", _unit_group(oracle, ("lamp_x",)), "vary")),
            delta=0.3,
            truth_labels=lambda z: (
                oracle.unit(z)[np.asarray([4, 10])],
                oracle.unit(z)[np.asarray([5, 6, 7, 8, 9])],
            ),
            notes=(
                "Proxy: fixed = per-row colour means over the sofa band (rows 55-95 %), which "
                "do not change when objects slide sideways; varied = per-column means of the band. "
                "`supervised-gt` regresses the true sofa_x and lamp_x, conditioned on the true "
                "sofa look factors."
            ),
            **common,
        ),
        *(
            (
                Case(
                    "sofa_look",
                    "rooms oracle: fix sofa look / vary sofa position (regressor CNN)",
                    oracle.generator,
                    **_regressor_sofa(),
                    truth=(pos, look, ("lamp position", _unit_group(oracle, ("lamp_x",)), "vary")),
                    delta=0.3,
                    notes=(
                        "Features = the shipped regressor CNN's predicted factors "
                        "(`features.room_factors`, trained on oracle renders), differentiated "
                        "through; the truth columns are the oracle's exact factors."
                    ),
                    **common,
                ),
            )
            if size == 64
            else ()
        ),
        _frequency(
            "frequency",
            "rooms oracle",
            oracle.generator,
            scale=s,
            truth=(
                ("geometry", _unit_group(oracle, _GEOMETRY), "fix"),
                (
                    "colour & light",
                    _unit_group(oracle, [n for n in rooms_lib.FACTOR_NAMES if n not in _GEOMETRY]),
                    "vary",
                ),
            ),
            **common,
        ),
    )


def faces_suite():
    """The face-DCGAN experiments; needs the cached face DCGAN and face-api weights."""
    from reds_jax.features import face_identity, face_landmarks
    from reds_jax.generators import face_dcgan

    gan = face_dcgan()
    kernel = np.asarray(gan.params["params"]["ConvT_0"]["kernel"], np.float64)  # [4, 4, d, C]
    bn = {
        k: np.asarray(v, np.float64)
        for k, v in {**gan.params["params"]["BN_0"], **gan.params["batch_stats"]["BN_0"]}.items()
    }
    mul = bn["scale"] / np.sqrt(bn["var"] + 1e-5)
    add = bn["bias"] - bn["mean"] * mul

    def first_layer(z):
        pre = jnp.einsum("ijkc,k->ijc", jnp.asarray(kernel, z.dtype), z)
        return jax.nn.relu(pre * jnp.asarray(mul, z.dtype) + jnp.asarray(add, z.dtype))

    weight = kernel.transpose(0, 1, 3, 2).reshape(-1, kernel.shape[2])  # [16 C, d]
    common = dict(latent_dim=gan.latent_dim, pca_fn=first_layer, sefa_weight=weight, step_scale=2.5)
    note = "Only the face box is fixed here; `faces_identity_hair` fixes identity and landmarks."
    hair = region((0.0, 0.1, 0.25, 0.8))
    return (
        Case(
            "faces_identity_hair",
            "face DCGAN: fix identity + landmarks (face-api) / vary hair (top-of-head) box",
            gan.generator,
            vary=(hair,),
            fix=(face_identity(), face_landmarks()),
            notes=(
                "Fixed: the face-api 128-d identity descriptor and the 68 landmarks, "
                "differentiated through the ported networks; fixed drift is their mean."
            ),
            **common,
        ),
        Case(
            "faces_hair",
            "face DCGAN: fix face box / vary hair (top-of-head) box",
            gan.generator,
            vary=(hair,),
            fix=(region((0.35, 0.2, 0.55, 0.6)),),
            notes=note,
            **common,
        ),
        _frequency(
            "faces_frequency",
            "face DCGAN",
            gan.generator,
            notes=note,
            **common,
        ),
    )


def _judged_rooms_cases(prefix: str, what: str, generator, latent_dim: int, **common):
    """The three judged rooms experiments on a learned rooms ``generator`` (``z -> [64, 64, 3]``).

    ``{prefix}_sofa_pixels`` (the shipped segmenter's sofa mask), ``{prefix}_sofa_look`` (the
    shipped regressor) and ``{prefix}_frequency``; the factor groups are judged by the separately
    trained judge network on the generated image. ``common``: further :class:`Case` fields.
    """
    from reds_jax.evaluation.judge import rooms_judge
    from reds_jax.features import sofa_mask

    judge = rooms_judge()

    def judged(names):
        idx = np.asarray([rooms_lib.FACTOR_NAMES.index(n) for n in names])
        return lambda z: judge.predict(generator(z))[idx]

    sofa = sofa_mask()
    room = [n for n in rooms_lib.FACTOR_NAMES if n not in ("sofa_x", *_SOFA_LOOK)]
    common = dict(latent_dim=latent_dim, **common)
    judge_note = (
        "Truth columns: the judge network's predicted factors (a separate CNN trained on oracle "
        "renders), at matched varied change."
    )
    return (
        Case(
            f"{prefix}_sofa_pixels",
            f"{what}: fix sofa pixels (segmenter mask) / vary all other pixels",
            generator,
            vary=(Feature(region(mask_fn=sofa, invert=True), "non-sofa pixels (segmenter)"),),
            fix=(Feature(region(mask_fn=sofa), "sofa pixels (segmenter)"),),
            truth=(
                ("sofa factors (judge)", judged(("sofa_x", *_SOFA_LOOK)), "fix"),
                ("room factors (judge)", judged(room), "vary"),
            ),
            notes="Mask = the shipped segmenter's soft sofa mask at the current image. "
            + judge_note,
            **common,
        ),
        Case(
            f"{prefix}_sofa_look",
            f"{what}: fix sofa look / vary sofa position (regressor CNN)",
            generator,
            **_regressor_sofa(),
            truth=(
                ("sofa position (judge)", judged(("sofa_x",)), "vary"),
                ("sofa look (judge)", judged(_SOFA_LOOK), "fix"),
            ),
            delta=0.3,
            notes=judge_note,
            **common,
        ),
        _frequency(
            f"{prefix}_frequency",
            what,
            generator,
            truth=(
                ("geometry (judge)", judged(_GEOMETRY), "fix"),
                (
                    "colour & light (judge)",
                    judged([n for n in rooms_lib.FACTOR_NAMES if n not in _GEOMETRY]),
                    "vary",
                ),
            ),
            notes=judge_note,
            **common,
        ),
    )


def rooms_gan_suite():
    """The rooms-GAN experiments (``gan_sofa_pixels``, ``gan_sofa_look``, ``gan_frequency``).

    The fixed and varied features come from the shipped segmenter and regressor; the factor
    groups are judged by the separately trained judge network on the generated image.
    """
    from reds_jax.generators import rooms_gan

    gan = rooms_gan()
    params = gan.params["params"]
    n_map = gan.module.mapping_layers

    def mapped(z):  # GANSpace: PCA of the mapping network's output w
        w = z / jnp.sqrt(jnp.mean(z**2) + 1e-8)
        for i in range(n_map):
            layer = params[f"map_{i}"]
            w = jax.nn.leaky_relu(
                w @ layer["kernel"].astype(z.dtype) + layer["bias"].astype(z.dtype), 0.2
            )
        return w

    sefa = np.asarray(params["map_0"]["kernel"], np.float64).T  # [w_dim, d]: first layer on z
    return _judged_rooms_cases(
        "gan", "rooms GAN", gan.generator, gan.latent_dim, pca_fn=mapped, sefa_weight=sefa
    )


def rooms_flow_suite(*, steps: int | None = None, method: str | None = None):
    """The rooms flow-model experiments (``flow_sofa_pixels``, ``flow_sofa_look``,
    ``flow_frequency``): the rooms-GAN experiments on the shipped flow-matching model, whose latent
    is the sampler's noise (``d = 3072``), solved matrix-free.

    Peers: PCA of the latents (the sampler has no mapping network: GANSpace's activation PCA and
    SeFa's first-layer weight do not apply), random, supervised.

    Args:
      steps: sampler steps.  method: sampler method (see :func:`reds_jax.generators.flow.flow`);
        None: the model's defaults.
    """
    rf = importlib.import_module("reds_jax.generators.rooms_flow")  # the module: defaults

    fm = rf.rooms_flow(steps=steps or rf.SAMPLER_STEPS, method=method or rf.SAMPLER_METHOD)
    return _judged_rooms_cases(
        "flow",
        f"rooms flow ({fm.steps} {fm.method} steps)",
        fm.generator,
        fm.latent_dim,
        solver="matrix_free",
        solver_options=dict(rf.MATRIX_FREE_OPTIONS),
        step_scale=8.0,  # latents of norm ~sqrt(3072) = 55 (the GAN's: 8)
    )


SUITES: dict[str, Callable[..., tuple[Case, ...]]] = dict(
    zip(
        SUITE_NAMES,
        (rooms_oracle_suite, rooms_gan_suite, faces_suite, rooms_flow_suite),
        strict=True,
    )
)
