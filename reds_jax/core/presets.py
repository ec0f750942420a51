"""Named presets: sets of defaults resolved into explicit arguments before anything is traced.

``Problem.official(...)`` with ``Dense(mode="fd_official")`` (a job's ``preset = "official"``)
reproduces the public reference code of the REDs paper
(github.com/balakg/rayleigh-eigendirections, commit 0f52564, ``main.py``/``utils.py``) step for step:

==============  =======================================  ==========================================
setting         reference code                           reds_jax default (no preset)
==============  =======================================  ==========================================
method          ``reds`` = null-space form               ``"reds"`` (Rayleigh form)
                (``method="nullspace"``)
``beta_fix``    ``--beta_f 0.99`` (its example scripts)  0.99
``beta_vary``   ``--beta_c 0.999``                       None (no cut)
local span      every step: the ``beta_c`` span          the top ``k`` directions
                (``nullspace``, ``maxc``); the whole
                null space (``minf``); all of R^d
                (``rand``, so its local path is linear)
``minf``        complement of the union of each fixed    smallest eigenvectors of ``Σ w_k A_k``
                feature's ``beta_f``-kept eigenspace     (``minf_mode="sum"``)
                (``minf_mode="union"``)
``k``           capped at the span rank at ``z0``        as given
                (``cap_k=True``; a warning says so)
Jacobians       finite differences, step = traversal     exact autodiff (``mode="auto"``)
                step size, central at ``z0``, forward
                later (``mode="fd_official"``)
``random``      uniform(−0.5, 0.5) entries, columns      orthonormal (Haar)
                normalised (``random_dist="uniform"``)
Gram noise      ``A += 1e-9·randn(d, d)`` before          none
                normalising
==============  =======================================  ==========================================

The Gram noise is available as ``gram_noise=1e-9`` (drawn from the per-latent key, so seeded) but
stays **off even in the preset**: it only adds randomness. The reference adds it to avoid singular
matrices in ``numpy.linalg.eig``; reds_jax symmetrises and uses ``eigh`` with deterministic
thresholds, which need no noise, and with the noise off the preset's paths are deterministic and
match the reference's noiseless arithmetic to rounding.

Explicit fields always override a preset's value (``Problem.official(g, vary, fix,
minf_mode="sum")`` keeps everything else of the reference; ``Dense()`` instead of
``Dense(mode="fd_official")`` gives exact Jacobians).
"""

from __future__ import annotations

import warnings
from typing import Any

PRESETS = ("official",)

# The reference's settings; beta values from its reproduce_examples.sh (its CLI has no defaults).
# The problem's (reds_jax.Problem.official) and the solver's (reds_jax.Dense(mode="fd_official")).
OFFICIAL_PROBLEM: dict[str, Any] = {
    "method": "nullspace",
    "beta_fix": 0.99,
    "beta_vary": 0.999,
    "local_span": "system",
    "minf_mode": "union",
    "cap_k": True,
    "random_dist": "uniform",
    "normalize": True,
}
OFFICIAL_SOLVER: dict[str, Any] = {"mode": "fd_official"}
OFFICIAL: dict[str, Any] = {**OFFICIAL_PROBLEM, **OFFICIAL_SOLVER}  # as job options

_TABLES = {"official": OFFICIAL}


def resolve(preset: str | None, method: str | None, options: dict[str, Any]) -> tuple[str, dict]:
    """A preset and a job's explicit fields → the explicit ``method`` and options (the job format's
    ``preset`` field; the library has :meth:`reds_jax.Problem.official`).

    Args:
      preset: None (reds_jax's defaults) or a name from :data:`PRESETS`.
      method: the user's ``method`` (None when not given).
      options: the user's keyword options (explicit values win over the preset's).

    Returns:
      ``(method, options)``; ``method`` defaults to ``"reds"`` without a preset.

    >>> resolve("official", None, {"mode": "auto"})[1]["mode"], resolve(None, None, {})[0]
    ('auto', 'reds')
    """
    if preset is None:
        return ("reds" if method is None else method), dict(options)
    if preset not in _TABLES:
        raise ValueError(f"preset={preset!r} is not a preset; pass one of {PRESETS} or None.")
    table = dict(_TABLES[preset])
    preset_method = table.pop("method")
    return (preset_method if method is None else method), {**table, **options}


def cap_k(k: int, rank: int, *, what: str) -> int:
    """``min(k, rank)`` with a warning when ``k`` is cut (the reference caps ``n_eig`` this way).

    Args:
      k: the requested number of directions.
      rank: directions in the span at the start latent(s) (smallest over a batch).
      what: description of the span, for the warning.

    Returns:
      The number of directions to use (at least 1).

    >>> cap_k(2, 5, what="the span")
    2
    """
    rank = max(int(rank), 1)
    if k > rank:
        warnings.warn(
            f"k={k} cut to {rank}: {what} has only {rank} direction(s) at the start latent(s) "
            "(the reference code caps n_eig the same way; pass Problem(..., cap_k=False) to keep k).",
            UserWarning,
            stacklevel=5,  # the caller of traverse/directions
        )
        return rank
    return k
