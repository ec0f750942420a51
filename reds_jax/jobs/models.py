"""Named generators with sensible default experiments, and feature specs written as text.

Used by the ``reds-jax`` command line and the augmentation job, where a generator and its features
have to be named in a shell or a TOML file rather than built in Python.

Models (:data:`MODELS`; :func:`register_model` adds more):

* ``"faces"``: the pretrained 64×64 face DCGAN (:func:`reds_jax.generators.face_dcgan`, fetched
  once with :mod:`reds_jax.assets`); default experiment: vary ``lowpass:4`` (colour, lighting,
  hair tint) while fixing ``highpass:1`` (edges: the face's structure).
* ``"rooms"``: the procedural living-room oracle (:func:`reds_jax.generators.rooms_oracle`);
  default experiment: vary ``lowpass:4``, fix ``highpass:2``.
* ``"rooms_gan"``: the living-room GAN trained in this repository, when its module and weights
  are present.
* ``"rooms_flow"``: the living-room flow-matching model trained in this repository
  (:func:`reds_jax.generators.rooms_flow.rooms_flow`; the latent is the sampler's noise,
  ``d = 3072``); its default solver is ``matrix_free``. ``model_args``: ``path``, ``steps``,
  ``method``.

Feature specs (:func:`parse_feature`; :data:`FEATURES` lists them): ``pixels``,
``region:top,left,h,w[,invert]`` (floats in [0, 1] are fractions of the image, ints are pixels),
``lowpass:σ``, ``highpass:σ``, ``band:low,high`` (cycles per pixel), the face-api features
``identity``, ``landmarks``, ``age``, ``gender`` (fetched once), ``arcface:backbone.pth[,box]``
(an ArcFace checkpoint you have), and compositions left to right
with ``@``: ``highpass:2@region:0.1,0.2,0.5,0.6`` is "the high frequencies inside the box".
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from reds_jax import features as _features
from reds_jax.core import validate

Array = jax.Array

__all__ = [
    "FEATURES",
    "MODELS",
    "Model",
    "ModelEntry",
    "available_models",
    "get_entry",
    "load_model",
    "parse_feature",
    "parse_features",
    "register_model",
    "start_latents",
]


# ---------------------------------------------------------------------------------------------
# Models


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """A loaded generator plus its default experiment.

    Attributes:
      name: registry name (``"faces"``, ``"rooms"``, ...).
      generator: pure ``z [latent_dim] -> image [H, W, 3]`` in [0, 1].
      latent_dim: ``d``.
      vary: default varied feature specs (see :func:`parse_feature`).
      fix: default fixed feature specs.
      step_size: default step length in latent units (a "small but perceptible" change).
      source: the object the generator came from (e.g. a ``FaceDCGAN`` or ``RoomsOracle``).
    """

    name: str
    generator: Callable[[Array], Array]
    latent_dim: int
    vary: tuple[str, ...]
    fix: tuple[str, ...]
    step_size: float
    source: Any = None


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """How to build a :class:`Model`.

    Attributes:
      loader: ``loader(**model_args) -> (source, generator, latent_dim)``.
      description: one line for ``--help`` and error messages.
      vary: default varied feature specs.
      fix: default fixed feature specs.
      step_size: default step length.
      available: ``() -> str | None``: None when the model can be loaded here, else why not.
      solver: default solver name (``"dense"``; ``"matrix_free"`` for large latents).
      solver_options: solver options used with the default solver (a job's own options win).
    """

    loader: Callable[..., tuple[Any, Callable[[Array], Array], int]]
    description: str
    vary: tuple[str, ...]
    fix: tuple[str, ...]
    step_size: float
    available: Callable[[], str | None] = lambda: None
    solver: str = "dense"
    solver_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


MAX_LATENT_DIM = 1 << 24
"""The largest latent size a model may report."""
MODELS: dict[str, ModelEntry] = {}
"""The model registry (name -> :class:`ModelEntry`)."""


def register_model(
    name: str,
    loader: Callable[..., tuple[Any, Callable[[Array], Array], int]],
    *,
    description: str,
    vary: Sequence[str],
    fix: Sequence[str] = (),
    step_size: float,
    available: Callable[[], str | None] | None = None,
    solver: str = "dense",
    solver_options: Mapping[str, Any] | None = None,
) -> None:
    """Adds (or replaces) a named model.

    Args:
      name: the name used by ``--model`` and ``model = "..."`` in configs.
      loader: ``loader(**model_args) -> (source, generator, latent_dim)`` where ``generator`` is a
        pure ``z [latent_dim] -> image [H, W, 3]``. Called lazily by :func:`load_model`.
      description: one line shown in help and errors.
      vary: default varied feature specs, e.g. ``("lowpass:4",)``.
      fix: default fixed feature specs.
      step_size: default step length in latent units.
      available: optional ``() -> None | reason``; a reason hides the model from
        :func:`available_models` and is shown when someone asks for it.
      solver: the solver a job uses when it names none (``"dense"`` or ``"matrix_free"``).
      solver_options: options of that default solver (e.g. ``{"cold_iters": 20}``), applied when
        a job uses that solver (named or not); the job's own ``options`` override them.

    >>> import jax.numpy as jnp
    >>> register_model("toy", lambda: (None, lambda z: jnp.tile(z, (2, 2, 1))[:, :, :3], 3),
    ...                description="toy", vary=("pixels",), step_size=0.1)
    >>> load_model("toy").latent_dim
    3
    >>> del MODELS["toy"]
    """
    for spec in (*vary, *fix):
        parse_feature(spec, resolve=False)
    MODELS[name] = ModelEntry(
        loader=loader,
        description=description,
        vary=tuple(vary),
        fix=tuple(fix),
        step_size=float(step_size),
        available=available or (lambda: None),
        solver=solver,
        solver_options=dict(solver_options or {}),
    )


def available_models() -> tuple[str, ...]:
    """Names of the registered models that can be loaded here.

    >>> "rooms" in available_models()
    True
    """
    return tuple(name for name, entry in MODELS.items() if entry.available() is None)


# "module:factory" -> (factory, its entry): one entry (one loader) per factory object, so that
# get_experiment's compile cache holds for factory models too
_FACTORY_ENTRIES: dict[str, tuple[Any, ModelEntry]] = {}


def _import_factory(name: str) -> ModelEntry:
    module_name, _, attr = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(
            f"model {name!r}: cannot import {attr!r} from module {module_name!r} ({err}). Pass a "
            f"registered model ({sorted(MODELS)}) or 'package.module:factory'."
        ) from None
    known = _FACTORY_ENTRIES.get(name)
    if known is not None and known[0] is factory:
        return known[1]

    def loader(**kwargs):
        try:
            made = factory(**kwargs)
        except Exception as err:  # noqa: BLE001 - user code: named, with its message
            raise ValueError(
                f"model factory {name!r} raised {type(err).__name__}: {err}".rstrip()
            ) from err
        if isinstance(made, tuple) and len(made) == 2 and callable(made[0]):
            return made, made[0], made[1]
        generator = getattr(made, "generator", None)
        latent_dim = getattr(made, "latent_dim", None)
        if not callable(generator) or latent_dim is None:
            raise ValueError(
                f"model factory {name!r} must return (generator, latent_dim) or an object with "
                f".generator and .latent_dim; got {type(made).__name__}."
            )
        return made, generator, latent_dim

    entry = ModelEntry(
        loader=loader,
        description=f"user factory {name}",
        vary=tuple(getattr(factory, "vary", ("pixels",))),
        fix=tuple(getattr(factory, "fix", ())),
        step_size=float(getattr(factory, "step_size", 0.1)),
    )
    _FACTORY_ENTRIES[name] = (factory, entry)
    return entry


def get_entry(name: str) -> ModelEntry:
    """The :class:`ModelEntry` of a registered name or of a ``"package.module:factory"`` path.

    A factory is called as ``factory(**model_args)`` and returns ``(generator, latent_dim)`` or an
    object with ``.generator`` and ``.latent_dim`` (e.g. a ``FaceDCGAN``). Its default experiment
    is read from the factory's optional attributes ``vary``, ``fix`` and ``step_size`` (defaults
    ``("pixels",)``, ``()``, ``0.1``). Importing the module does not call the factory.

    Raises:
      ValueError: unknown name or a factory that cannot be imported.

    >>> get_entry("rooms").vary
    ('lowpass:4',)
    """
    if not isinstance(name, str):
        raise ValueError(f"model must be a name string; got {name!r}.")
    if name in MODELS:
        return MODELS[name]
    if ":" in name:
        return _import_factory(name)
    raise ValueError(
        f"unknown model {name!r}; pass one of {sorted(MODELS)} or 'package.module:factory'."
    )


def load_model(name: str, **model_args: Any) -> Model:
    """Builds a registered model (or one from a ``"package.module:factory"`` path).

    Args:
      name: a key of :data:`MODELS`, or ``"package.module:factory"`` (see :func:`get_entry`).
      **model_args: passed to the model's loader (``rooms``: ``latent_dim``, ``size``, ``seed``;
        ``faces``: ``root``).

    Returns:
      A :class:`Model`.

    Raises:
      ValueError: unknown name, a model not available here, or arguments its loader rejects.

    >>> m = load_model("rooms", latent_dim=4, size=16)
    >>> m.latent_dim, m.vary, m.fix
    (4, ('lowpass:4',), ('highpass:2',))
    """
    entry = get_entry(name)
    reason = entry.available()
    if reason is not None:
        raise ValueError(
            f"model {name!r} is not available: {reason} Available models: {available_models()}."
        )
    try:
        inspect.signature(entry.loader).bind(**model_args)
    except TypeError as err:
        raise ValueError(
            f"model {name!r} does not accept model_args {sorted(model_args)} ({err}); its "
            f"loader takes {inspect.signature(entry.loader)}."
        ) from None
    source, generator, latent_dim = entry.loader(**model_args)
    if (
        isinstance(latent_dim, bool)
        or not isinstance(latent_dim, int | np.integer)
        or not 1 <= latent_dim <= MAX_LATENT_DIM
    ):
        raise ValueError(
            f"model {name!r} reports latent_dim={latent_dim!r}; a model's latent size must be an "
            f"int in [1, {MAX_LATENT_DIM}]. Fix its loader or factory."
        )
    if not callable(generator):
        raise ValueError(f"model {name!r}: its generator {generator!r} is not callable.")
    return Model(
        name=name,
        generator=generator,
        latent_dim=int(latent_dim),
        vary=entry.vary,
        fix=entry.fix,
        step_size=entry.step_size,
        source=source,
    )


def _load_faces(root: str | None = None):
    from reds_jax.generators import face_dcgan

    gan = face_dcgan(root)
    return gan, gan.generator, gan.latent_dim


def _load_rooms(latent_dim: int = 16, size: int = 64, seed: int = 0):
    from reds_jax.generators import rooms_oracle

    oracle = rooms_oracle(latent_dim=latent_dim, size=size, seed=seed)
    return oracle, oracle.generator, oracle.latent_dim


def _load_rooms_gan(path: str | None = None):
    from reds_jax.generators import rooms_gan

    gan = rooms_gan(path)
    return gan, gan.generator, gan.latent_dim


def _load_rooms_flow(
    path: str | None = None,
    steps: int | None = None,
    method: str | None = None,
    remat: bool = True,
):
    rf = importlib.import_module("reds_jax.generators.rooms_flow")  # the module: defaults

    fm = rf.rooms_flow(
        path,
        steps=steps or rf.SAMPLER_STEPS,
        method=method or rf.SAMPLER_METHOD,
        remat=remat,
        sha256=None if path else "shipped",
    )
    return fm, fm.generator, fm.latent_dim


def _rooms_flow_available() -> str | None:
    from reds_jax.weights import WEIGHTS_DIR

    if not (WEIGHTS_DIR / "rooms_flow.msgpack").is_file():
        return "its weights (reds_jax/weights/rooms_flow.msgpack) are not installed."
    return None


def start_latents(seeds: Sequence[int] | np.ndarray, latent_dim: int, *, key: int = 0, dtype=None):
    """Standard-normal start latents, one per seed: ``normal(fold_in(key(key), seed), [d])``.

    Each latent depends only on ``(key, seed)``, never on which other seeds are in the batch.

    Args:
      seeds: ``[N]`` non-negative ints.
      latent_dim: ``d``.
      key: base seed of the PRNG key.
      dtype: float dtype (default: JAX's default float).

    Returns:
      ``[N, d]`` latents.

    >>> start_latents([0, 1], 3).shape
    (2, 3)
    """
    seeds = jnp.asarray(np.asarray(seeds, dtype=np.int64).astype(np.uint32))
    base = jax.random.key(key)
    dtype = dtype or jnp.result_type(float)
    return jax.vmap(lambda s: jax.random.normal(jax.random.fold_in(base, s), (latent_dim,), dtype))(
        seeds
    )


# ---------------------------------------------------------------------------------------------
# Feature specs


MAX_SPEC_CHARS = 1000
"""The longest feature spec (characters)."""
MAX_STAGES = validate.BOUNDS["stages"]
"""The most stages one spec composes (``A@B@...``; see :data:`reds_jax.core.validate.BOUNDS`)."""


def _short(spec: Any, limit: int = 80) -> str:
    """``repr(spec)``, cut to about ``limit`` characters (errors never echo a huge spec)."""
    text = repr(spec)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


def _numbers(args: list[str], spec: str, usage: str) -> list[float | int]:
    out: list[float | int] = []
    for a in args:
        try:
            out.append(int(a) if a.lstrip("+-").isdigit() else float(a))
        except ValueError:
            raise ValueError(
                f"feature {_short(spec)}: {a!r} is not a number; write {usage}."
            ) from None
    return out


def _n_args(args: list[str], n: int, spec: str, usage: str) -> list[float | int]:
    if len(args) != n:
        raise ValueError(f"feature {_short(spec)} takes {n} argument(s); write {usage}.")
    return _numbers(args, spec, usage)


def _pixels(args, spec, usage):
    _n_args(args, 0, spec, usage)
    return _features.pixels()


def _region(args, spec, usage):
    invert = bool(args) and args[-1].lower() in ("invert", "inv", "!")
    box = _n_args(args[:-1] if invert else args, 4, spec, usage)
    return _features.region(tuple(box), invert=invert)


def _lowpass(args, spec, usage):
    return _features.lowpass(float(_n_args(args, 1, spec, usage)[0]))


def _highpass(args, spec, usage):
    return _features.highpass(float(_n_args(args, 1, spec, usage)[0]))


def _band(args, spec, usage):
    low, high = _n_args(args, 2, spec, usage)
    return _features.fourier_band(float(low), float(high))


def _neural(fn_name: str, **kwargs):
    def build(args, spec, usage):
        _n_args(args, 0, spec, usage)
        return getattr(_features, fn_name)(**kwargs)

    return build


def _arcface(args, spec, usage):
    if len(args) not in (1, 5) or not args[0]:
        raise ValueError(f"feature {_short(spec)}: write {usage}.")
    box = tuple(_numbers(args[1:], spec, usage)) if len(args) == 5 else None
    return _features.arcface(args[0], box=box)


FEATURES: dict[str, tuple[str, Callable[[list[str], str, str], Any]]] = {
    "pixels": ("pixels", _pixels),
    "region": ("region:top,left,height,width[,invert]", _region),
    "lowpass": ("lowpass:sigma", _lowpass),
    "highpass": ("highpass:sigma", _highpass),
    "band": ("band:low,high", _band),
    "identity": ("identity", _neural("face_identity")),
    "landmarks": ("landmarks", _neural("face_landmarks")),
    "age": ("age", _neural("age_gender", output="age")),
    "gender": ("gender", _neural("age_gender", output="gender")),
    "arcface": ("arcface:backbone.pth[,top,left,h,w]", _arcface),
}
"""Feature spec names -> (usage, builder). Extend it to name new features on the command line."""


def _valid_features() -> str:
    return ", ".join(usage for usage, _ in FEATURES.values())


def parse_feature(spec: str, *, resolve: bool = True):
    """Builds a feature from its text spec.

    Args:
      spec: e.g. ``"lowpass:2"``, ``"region:0.1,0.2,0.5,0.6"``, ``"region:8,8,16,16,invert"``,
        ``"band:0.05,0.2"``, or stages joined by ``@`` (``"highpass:2@region:0.1,0.2,0.5,0.6"``).
      resolve: build the feature (False only checks the names, without loading any weights).

    Returns:
      A :class:`reds_jax.features.Feature` (None when ``resolve=False``).

    Raises:
      ValueError: an unknown name (the message lists the valid ones) or bad arguments.

    >>> parse_feature("highpass:2@region:0.25,0.25,0.5,0.5").name
    'highpass:2∘region:0.25,0.25,0.5,0.5'
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a feature spec must be a non-empty string; got {_short(spec)}.")
    if len(spec) > MAX_SPEC_CHARS:
        raise ValueError(
            f"feature spec {_short(spec)} has {len(spec)} characters; at most {MAX_SPEC_CHARS}."
        )
    parts = spec.strip().split("@")
    if len(parts) > MAX_STAGES:
        raise ValueError(
            f"feature spec {_short(spec)} composes {len(parts)} stages; join at most {MAX_STAGES} "
            "with '@'."
        )
    stages = []
    for part in parts:
        name, _, rest = part.strip().partition(":")
        name = name.strip().lower()
        if name not in FEATURES:
            raise ValueError(
                f"unknown feature {name!r} in {_short(spec)}; valid features: {_valid_features()} "
                "(join stages with '@')."
            )
        usage, build = FEATURES[name]
        args = [a.strip() for a in rest.split(",")] if rest.strip() else []
        if resolve:
            stages.append(build(args, spec, usage))
        elif name in ("pixels", "region", "lowpass", "highpass", "band"):
            build(args, spec, usage)  # cheap: validates the arguments
    if not resolve:
        return None
    if len(stages) == 1:
        return stages[0]
    return _features.compose(*stages)


def parse_features(specs: Sequence[str] | str) -> tuple:
    """:func:`parse_feature` over a sequence (a single string counts as one spec)."""
    if isinstance(specs, str):
        specs = (specs,)
    return tuple(parse_feature(s) for s in specs)


# ---------------------------------------------------------------------------------------------
# Built-in models

register_model(
    "faces",
    _load_faces,
    description="pretrained 64x64 face DCGAN (d=100; weights fetched once via reds_jax.assets)",
    vary=("lowpass:4",),
    fix=("highpass:1",),
    step_size=1.0,
)
register_model(
    "rooms",
    _load_rooms,
    description="procedural living rooms oracle (d=16, 64x64; model_args latent_dim, size, seed)",
    vary=("lowpass:4",),
    fix=("highpass:2",),
    step_size=0.25,
)
register_model(
    "rooms_gan",
    _load_rooms_gan,
    description="living-room GAN trained in this repository (d=64, 64x64)",
    vary=("lowpass:4",),
    fix=("highpass:2",),
    step_size=1.5,
)
register_model(
    "rooms_flow",
    _load_rooms_flow,
    description="living-room flow-matching model trained in this repository (d=3072 noise, "
    "32x32 sampled in 2 Euler steps, shown at 64x64; model_args path, steps, method)",
    vary=("lowpass:4",),
    fix=("highpass:2",),
    step_size=8.0,
    solver="matrix_free",
    solver_options={"cold_iters": 20, "max_iters": 4},  # = rooms_flow.MATRIX_FREE_OPTIONS
    available=_rooms_flow_available,
)
