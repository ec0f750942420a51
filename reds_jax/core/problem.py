"""The problem a traversal solves at every latent: a generator, what to vary, what to hold fixed,
the method and its settings, as one self-validating object.

:class:`Problem` checks every setting in its constructor (an error names the field and what to
pass); the checks that need a latent's shape (the generator's image, the features' sizes, the
range of ``k``) run in :meth:`Problem.at`, which :func:`reds_jax.traverse` and
:func:`reds_jax.directions` call before tracing. :meth:`Problem.official` is the reference code's
settings (:mod:`reds_jax.core.presets`).

>>> import jax.numpy as jnp
>>> from reds_jax import features
>>> g = lambda z: jnp.reshape(jnp.stack([z[0], 2.0 * z[1], z[0] + z[1]]), (1, 3, 1))
>>> Problem(g, vary=features.pixels(), method="maxc").k
1
>>> Problem(g, vary=features.pixels(), method="minf")
Traceback (most recent call last):
...
ValueError: method='minf' needs fixed features: pass fix=[...].
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from reds_jax.core import presets, rayleigh
from reds_jax.core.validate import feature_shape, flag, in_dtype, integer, number

Array = jax.Array

__all__ = ["LOCAL_SPANS", "METHODS", "Problem", "check_latents"]

METHODS = ("reds", "nullspace", "maxc", "minf", "random")
LOCAL_SPANS = ("k", "system")


def _as_features(x: Any, name: str, allow_empty: bool) -> tuple[Callable, ...]:
    if callable(x):
        x = (x,)
    try:
        feats = tuple(x)
    except TypeError:
        feats = None
    if feats is None or not all(callable(f) for f in feats):
        raise ValueError(
            f"{name} must be a feature callable (image -> array) or a sequence of them; got {x!r}."
        )
    if not feats and not allow_empty:
        raise ValueError(
            f"{name} needs at least one feature, e.g. {name}=reds_jax.features.pixels()."
        )
    return feats


def _float_tuple(x: Any, n: int, name: str, default: float, lo: float, hi: float) -> tuple:
    if x is None:
        x = default
    try:
        flat = [x] if np.ndim(x) == 0 else list(np.ravel(np.asarray(x, dtype=object)))
        vals = tuple(number(v, name) for v in flat)
    except ValueError:
        raise ValueError(
            f"{name} must be one number or one per feature, each in [{lo}, {hi}]; got {x!r}."
        ) from None
    vals = vals * n if np.ndim(x) == 0 else vals
    if len(vals) != n:
        raise ValueError(f"{name} needs {n} values (one per feature) or one scalar; got {x!r}.")
    if not all(lo <= v <= hi and math.isfinite(v) for v in vals):
        raise ValueError(f"{name} values must lie in [{lo}, {hi}]; got {x!r}.")
    return vals


def check_latents(z: Any, name: str) -> Array:
    """``z`` as a float array ``[d]`` or ``[N, d]`` of finite values (values are checked only
    when concrete), or a ValueError naming ``name``.

    >>> check_latents([1, 2], "z0").dtype.kind
    'f'
    """
    dtype = getattr(z, "dtype", None)
    if dtype is None:  # a list, a number, a string: read it as numpy would
        try:
            dtype = np.asarray(z).dtype
        except (TypeError, ValueError):  # ragged lists
            dtype = np.dtype(object)
    if np.dtype(dtype).kind not in "iuf":
        raise ValueError(
            f"{name} must be real numbers of shape [d] or [N, d]; got {type(z).__name__} of "
            f"dtype {dtype}."
        )
    z = jnp.asarray(z)
    if not jnp.issubdtype(z.dtype, jnp.floating):
        z = z.astype(jnp.result_type(float))
    if z.ndim not in (1, 2) or z.shape[-1] < 1 or z.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape [d] or [N, d] with N, d >= 1; got shape {z.shape}."
        )
    try:
        finite = bool(jnp.all(jnp.isfinite(z)))
    except jax.errors.ConcretizationTypeError:
        finite = True  # abstract latents (the caller jits/vmaps): values are not known here
    if not finite:
        raise ValueError(f"{name} contains non-finite values (NaN/inf); pass finite latents.")
    return z


@dataclasses.dataclass(frozen=True)
class Problem:
    """What to solve at every latent: maximise the varied features' change while holding the fixed
    features (see the method below), for the top ``k`` directions.

    A frozen, hashable object (part of the jit cache key): build it once and reuse it. Numbers
    given as one scalar for a per-feature setting are repeated per feature; the stored fields are
    the normalised tuples.

    Args:
      generator: pure ``z [d] -> image [H, W, C]``.
      vary: feature(s) ``image -> array`` to change (one callable or a sequence).
      fix: features to hold fixed (default none).
      method: ``"reds"`` (Rayleigh form; default), ``"nullspace"`` (the reference code's form;
        needs ``fix``), ``"maxc"`` (top eigenvectors of the varied Gram), ``"minf"`` (the fixed
        null space; needs ``fix``) or ``"random"`` (needs a ``key`` in the call).
      k: number of directions (``2k`` paths per start latent).
      weights: per fixed feature (one number, or one each; default 1).
      vary_weights: per varied feature (default 1; not all zero).
      normalize: divide each Gram by its Frobenius norm (default True).
      ridge: ``λ`` of ``B = Σ w_k A_k + λI`` (default 1e-6; raised to the precision floor when
        smaller, counted in ``diagnostics.ridge_raised``).
      beta_fix: null-space form: fraction of each fixed Gram's squared spectrum kept (default 0.99).
      beta_vary: fraction of the varied spectrum kept (``nullspace``; also cuts ``maxc``'s span),
        or None (no cut; default).
      local_span: the span a ``local`` step projects onto: ``"k"`` (the new top-``k``
        directions) or ``"system"`` (the method's own span, re-selected at every step as the
        reference does). None (default): ``"system"`` when ``beta_vary`` is given (``nullspace``,
        ``maxc``) or ``minf_mode="union"``, else ``"k"``.
      minf_mode: ``"sum"`` (smallest eigenvectors of ``Σ w_k A_k``; default) or the reference's
        ``"union"`` (:func:`reds_jax.core.rayleigh.minf_union_system`).
      random_dist: ``"orthogonal"`` (Haar; default) or the reference's ``"uniform"``.
      gram_noise: scale of the reference's ``randn(d, d)`` added to every Gram (0: none; drawn
        from the key, so seeded).
      cap_k: cut ``k`` to the method's span rank at the start latents, with a warning (default
        False; only solvers that know their span rank do: :class:`~reds_jax.core.solvers.Dense`).

    Raises:
      ValueError: a setting out of range, naming it and what to pass.
    """

    generator: Callable
    vary: Any
    fix: Any = ()
    method: str = "reds"
    k: int = 1
    weights: Any = None
    vary_weights: Any = None
    normalize: bool = True
    ridge: float = 1e-6
    beta_fix: Any = None
    beta_vary: float | None = None
    local_span: str | None = None
    minf_mode: str = "sum"
    random_dist: str = "orthogonal"
    gram_noise: float = 0.0
    cap_k: bool = False

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        if not callable(self.generator):
            raise ValueError(
                f"generator must be a pure callable z [d] -> image [H, W, C]; got "
                f"{self.generator!r}."
            )
        put("vary", _as_features(self.vary, "vary", allow_empty=False))
        put("fix", _as_features(self.fix, "fix", allow_empty=True))
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} is not a REDs method; pass one of {METHODS}.")
        if self.method in ("nullspace", "minf") and not self.fix:
            raise ValueError(f"method={self.method!r} needs fixed features: pass fix=[...].")
        put("k", integer(self.k, "k", 1))
        inf = math.inf
        put("weights", _float_tuple(self.weights, len(self.fix), "weights", 1.0, 0.0, inf))
        vw = _float_tuple(self.vary_weights, len(self.vary), "vary_weights", 1.0, 0.0, inf)
        if not any(vw):
            raise ValueError(
                f"vary_weights are all zero ({self.vary_weights!r}): nothing would be varied; "
                "give at least one varied feature a weight > 0."
            )
        put("vary_weights", vw)
        put("normalize", flag(self.normalize, "normalize"))
        put("ridge", number(self.ridge, "ridge", low=0.0))
        put("beta_fix", _float_tuple(self.beta_fix, len(self.fix), "beta_fix", 0.99, 1e-12, 1.0))
        if self.beta_vary is not None:
            put("beta_vary", _float_tuple(self.beta_vary, 1, "beta_vary", 1.0, 1e-12, 1.0)[0])
        for name, valid in (
            ("minf_mode", rayleigh.MINF_MODES),
            ("random_dist", rayleigh.RANDOM_DISTS),
        ):
            if getattr(self, name) not in valid:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} is not valid; pass one of {valid}."
                )
        g = self.gram_noise
        if not (isinstance(g, int | float) and not isinstance(g, bool) and 0 <= g < inf):
            raise ValueError(f"gram_noise must be a finite number >= 0 (e.g. 1e-9); got {g!r}.")
        put("gram_noise", float(g))
        if self.local_span is None:
            own = (self.method in ("nullspace", "maxc") and self.beta_vary is not None) or (
                self.method == "minf" and self.minf_mode == "union"
            )
            put("local_span", "system" if own else "k")
        if self.local_span not in LOCAL_SPANS:
            raise ValueError(
                f"local_span={self.local_span!r} is not valid; pass one of {LOCAL_SPANS}."
            )
        put("cap_k", flag(self.cap_k, "cap_k"))

    @classmethod
    def official(cls, generator: Callable, vary: Any, fix: Any = (), **fields: Any) -> Problem:
        """The reference code's settings (:data:`reds_jax.core.presets.OFFICIAL_PROBLEM`: the
        null-space form, ``beta_fix=0.99``, ``beta_vary=0.999``, the method's own span, the union
        ``minf``, uniform random directions, ``k`` capped at the span rank); ``fields`` override
        them. Pair it with ``Dense(mode="fd_official")`` for the reference's finite differences.

        >>> import jax.numpy as jnp
        >>> p = Problem.official(lambda z: z.reshape(1, -1, 1), vary=jnp.ravel, fix=[jnp.ravel])
        >>> p.method, p.beta_vary, p.local_span, p.cap_k
        ('nullspace', 0.999, 'system', True)
        """
        return cls(generator, vary, fix, **{**presets.OFFICIAL_PROBLEM, **fields})

    def rows(self, d: int) -> int:
        """Rows of the direction system spanning a ``local`` step at latent size ``d``."""
        return d if self.local_span == "system" else self.k

    def at(self, z: Array) -> Problem:
        """The checks that need the latents ``z [d]`` or ``[N, d]`` (shapes only): the generator
        maps one latent to one image, each feature gives a real array, and ``k`` is in range.
        Features are cast to the latents' dtype where they differ.

        Returns:
          This problem, or a copy with dtype-casting features.

        Raises:
          ValueError: naming the generator, the feature (``vary[i]``/``fix[i]``) or ``k``.
        """
        one = z[0] if z.ndim == 2 else z
        d = one.shape[0]
        try:
            image = jax.eval_shape(self.generator, one)
        except Exception as err:  # noqa: BLE001 - re-raised with context
            raise ValueError(
                f"generator could not be applied to one latent of shape [{d}]: {err}. The "
                "generator must be a pure callable z [d] -> image [H, W, C]."
            ) from err
        if not hasattr(image, "shape") or len(image.shape) != 3:
            raise ValueError(
                "generator must map one latent [d] to one image [H, W, C]; got output "
                f"{getattr(image, 'shape', image)}."
            )
        vary, m_vary = self._checked(self.vary, one, "vary")
        fix, _ = self._checked(self.fix, one, "fix")
        limit = min(d, m_vary) if self.method in ("reds", "nullspace", "maxc") else d
        if self.k > limit:
            raise ValueError(
                f"k={self.k!r} is out of range for method={self.method!r}: pass 1 <= k <= {limit} "
                f"(latent size d={d}, varied feature size m={m_vary})."
            )
        if vary == self.vary and fix == self.fix:
            return self
        return dataclasses.replace(self, vary=vary, fix=fix)

    def _checked(self, feats: tuple, z: Array, role: str) -> tuple[tuple, int]:
        """``(features, total output size)``: each traced once with its name, cast to the
        latents' dtype if it differs."""
        outs = [feature_shape(f, self.generator, z, f"{role}[{i}]") for i, f in enumerate(feats)]
        size = sum(int(np.prod(o.shape)) for o in outs)
        cast = tuple(in_dtype(f, o, z.dtype) for f, o in zip(feats, outs, strict=True))
        return cast, size
