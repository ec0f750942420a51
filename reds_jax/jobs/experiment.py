"""The compiled, batched experiment that runs a job configuration.

:class:`Experiment` turns a :class:`~reds_jax.jobs.config.JobConfig` into one compiled function
``(start latents [B, d], seeds [B]) -> images, latents, distances`` that ``reds-jax traverse``,
``reds-jax demo`` and the augmentation job (:mod:`reds_jax.jobs.augment`) share.
:class:`JobConfig`, :class:`ConfigError` and :func:`parse_seeds` are re-exported from
:mod:`reds_jax.jobs.config`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from reds_jax.core.api import shard_batch
from reds_jax.core.path import traverse_one
from reds_jax.core.solvers import FALLBACKS
from reds_jax.core.validate import check_memory
from reds_jax.jobs import models
from reds_jax.jobs.config import ConfigError, JobConfig, parse_seeds

__all__ = [
    "DIAGNOSTICS_PREFIX",
    "ConfigError",
    "Experiment",
    "JobConfig",
    "diagnostics_warning",
    "get_experiment",
    "parse_seeds",
]

DIAGNOSTICS_PREFIX = "diagnostics_"  # run() / shard keys: diagnostics_<field of Diagnostics>


# ---------------------------------------------------------------------------------------------
# The compiled experiment


def diagnostics_warning(arrays: Mapping[str, np.ndarray]) -> str | None:
    """One warning line with the non-zero fallback counts of :meth:`Experiment.run` arrays (or the
    totals of several runs), or None when no fallback changed a result.

    A raised ridge alone is no warning: in float32 the precision floor ``10·d·eps·max diag B``
    exceeds a small ``ridge`` on every default run, and the raised ridge is what the solve can
    resolve in that precision. It is counted in ``diagnostics_ridge_raised`` and listed here only
    beside a fallback that did change a result.

    >>> diagnostics_warning({"diagnostics_solve_fallback": np.array([[0, 2]])})
    'warning: numerical fallbacks on some paths: solve_fallback=2 (per-path counts in the \
diagnostics_* arrays; see the guide "Numerics and fallbacks")'
    >>> diagnostics_warning({"diagnostics_ridge_raised": np.array([[1, 1]])}) is None
    True
    >>> diagnostics_warning(
    ...     {"diagnostics_ridge_raised": np.array([1]), "diagnostics_kept_direction": np.array([3])}
    ... ).split(" (")[0]
    'warning: numerical fallbacks on some paths: ridge_raised=1, kept_direction=3'
    """
    counts = {
        f: int(np.sum(arrays[DIAGNOSTICS_PREFIX + f]))
        for f in FALLBACKS
        if DIAGNOSTICS_PREFIX + f in arrays
    }
    counts = {f: c for f, c in counts.items() if c}
    if not counts or list(counts) == ["ridge_raised"]:
        return None
    listed = ", ".join(f"{f}={c}" for f, c in counts.items())
    return (
        f"warning: numerical fallbacks on some paths: {listed} (per-path counts in the "
        f'{DIAGNOSTICS_PREFIX}* arrays; see the guide "Numerics and fallbacks")'
    )


class Experiment:
    """A model, its features and a traversal setting, compiled once for a fixed batch size.

    Args:
      config: a :class:`JobConfig` (``seeds``/``latents``/sharding fields are not used here).

    Raises:
      ConfigError: a bad field, or options that :class:`reds_jax.Problem` or the solver rejects (e.g. ``k``
        larger than the varied feature or latent size).

    >>> exp = Experiment(JobConfig(model="rooms", model_args={"latent_dim": 4, "size": 16},
    ...                            k=1, steps=1))  # compiles a traversal  # doctest: +SKIP
    >>> exp.run(seeds=[0, 1])["images"].shape  # compiles a traversal  # doctest: +SKIP
    (2, 2, 2, 16, 16, 3)
    """

    def __init__(self, config: JobConfig):
        self.config = cfg = config.resolved()
        try:
            self.model = models.load_model(cfg.model, **cfg.model_args)
        except ValueError as err:
            raise ConfigError(f"config: field 'model': cannot load {cfg.model!r}: {err}") from None
        self.vary = models.parse_features(cfg.vary)
        self.fix = models.parse_features(cfg.fix)
        self.dtype = jnp.dtype(cfg.dtype)
        if jnp.zeros((), self.dtype).dtype != self.dtype:
            raise ConfigError(
                f"config: field 'dtype' is {cfg.dtype!r} but JAX runs without 64-bit support; "
                "pass dtype = 'float32' or set JAX_ENABLE_X64=1."
            )
        self._fn = jax.jit(self._batched)
        self._executables: dict[tuple, Any] = {}
        d = self.model.latent_dim
        try:  # validate against traverse's own checks before any compile; the trace of this
            # batch of one is reused by a run of one latent (a demo, an app click)
            shapes = self._fn.eval_shape(jnp.zeros((1, d), self.dtype), jnp.zeros((1,), jnp.uint32))
        except ValueError as err:
            raise ConfigError(f"config: {err}") from None
        # bytes kept per start latent, and (a rough upper estimate) needed while computing one:
        # the float images of every frame, their features and distances, besides the outputs
        self._out_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes))
        self._work_bytes = self._out_bytes + 3 * shapes["images"].size * self.dtype.itemsize

    @property
    def latent_dim(self) -> int:
        """``d``."""
        return self.model.latent_dim

    def _batched(self, z: jax.Array, seeds: jax.Array):
        """``_one`` over a batch ``[B, d]``. Matrix-free traversals run one latent at a time
        inside the call (``lax.map`` within each device's share), so every latent is computed
        with the same shapes whatever the batch size: in float32 the iterative solver amplifies
        the rounding differences of batched kernels (XLA picks other blockings for other
        batch shapes) from ~1e-6 to ~5e-3 in the latents after 6 steps (issue 40 J)."""
        if self.config.solver != "matrix_free":
            return jax.vmap(self._one)(z, seeds)
        n_dev = len(jax.local_devices())
        n_dev = n_dev if z.shape[0] % n_dev == 0 else 1  # (the validating trace: a batch of 1)
        zs = z.reshape(n_dev, -1, z.shape[-1])  # device-major, as shard_batch lays it out
        ss = seeds.reshape(n_dev, -1)
        out = jax.vmap(lambda zd, sd: jax.lax.map(lambda a: self._one(*a), (zd, sd)))(zs, ss)
        return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), out)

    def _one(self, z: jax.Array, seed: jax.Array):
        cfg = self.config
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(cfg.key), seed), 1)
        problem, options = cfg.traverse_args(self.model.generator, self.vary, self.fix)
        tr = traverse_one(problem, z, key, **options)
        images = jax.vmap(jax.vmap(self.model.generator))(tr.latents)
        images = jnp.round(jnp.clip(images, 0.0, 1.0) * 255.0).astype(jnp.uint8)
        paths = tr.latents.shape[:2]

        def stack(ds):
            return jnp.stack(ds) if ds else jnp.zeros((0, *paths), tr.latents.dtype)

        return {
            "images": images,
            "latents": tr.latents,
            "vary_distances": stack(tr.vary_distances),
            "fix_distances": stack(tr.fix_distances),
            "values": tr.values,
            **{DIAGNOSTICS_PREFIX + f: v for f, v in tr.diagnostics._asdict().items()},
        }

    def _compiled(self, zb: jax.Array, sb: jax.Array, on_compile):
        """The traversal compiled ahead of time for this batch's shapes and shardings (once per
        experiment and batch layout; copies made by :func:`get_experiment` share them)."""
        key = (zb.shape, str(zb.sharding), str(sb.sharding))
        if key not in self._executables:
            compile_fn = lambda: self._fn.lower(zb, sb).compile()  # noqa: E731
            self._executables[key] = compile_fn() if on_compile is None else on_compile(compile_fn)
        return self._executables[key]

    def start_latents(self, seeds: Sequence[int]) -> np.ndarray:
        """``[N, d]`` start latents of ``seeds`` (see :func:`reds_jax.jobs.models.start_latents`)."""
        return np.asarray(
            models.start_latents(seeds, self.latent_dim, key=self.config.key, dtype=self.dtype)
        )

    def run(
        self,
        *,
        seeds: Sequence[int] | np.ndarray,
        latents: np.ndarray | None = None,
        batch_size: int | None = None,
        on_batch: Callable[[int], Any] | None = None,
        fix: str | None = None,
        on_compile: Callable[[Callable[[], Any]], Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """Traverses from the start latents of ``seeds`` (or the given ``latents``) and renders.

        Every compiled call gets exactly ``batch_size`` latents (the last batch is padded), so a
        job compiles once; the batch is sharded over this process's ``jax.local_devices()``.

        Args:
          seeds: ``[N]`` seeds (the traversal keys; the start latents too unless ``latents``).
          latents: optional ``[N, d]`` start latents.
          batch_size: latents per compiled call; every call gets exactly this many (padded).
            Default: ``min(config.batch_size, N)``.
          on_batch: called with the number of latents done after every compiled call.
          fix: what the memory refusal advises (default: fewer seeds, lower k, steps, batch).
          on_compile: called once per batch size with a function that compiles the traversal
            (ahead of time: a load from the persistent compilation cache when it is there) and
            returns the compiled program; must return what it returns (e.g.
            :meth:`reds_jax.jobs.progress.BatchProgress.compile`, which says which it was).

        Returns:
          dict of numpy arrays: ``images`` uint8 ``[N, 2k, T+1, H, W, 3]``, ``latents``
          ``[N, 2k, T+1, d]``, ``vary_distances`` ``[N, V, 2k, T+1]``, ``fix_distances``
          ``[N, F, 2k, T+1]``, ``values`` ``[N, k]``, ``seeds`` int64 ``[N]``, and the
          :class:`~reds_jax.core.solvers.Diagnostics` fields as ``diagnostics_<field>`` (counts
          int32 ``[N, 2k]``, ``diagnostics_residual`` ``[N, 2k, T+1]``).
        """
        n_dev = len(jax.local_devices())
        bs = batch_size or min(self.config.batch_size, len(seeds))
        bs = -(-bs // n_dev) * n_dev
        cfg = self.config
        check_memory(
            len(seeds) * self._out_bytes + bs * self._work_bytes,
            f"traversing {len(seeds)} start latent(s) with k={cfg.k}, steps={cfg.steps} "
            f"(2k·(T+1) = {2 * cfg.k * (cfg.steps + 1)} frames each, {bs} per compiled call)",
            fix
            or "pass fewer seeds (reds-jax augment writes them in shards), or lower k, steps "
            "or batch_size",
        )
        seeds = np.asarray(seeds, np.int64).reshape(-1)
        z = self.start_latents(seeds) if latents is None else np.asarray(latents, self.dtype)
        if z.shape != (len(seeds), self.latent_dim):
            raise ValueError(
                f"latents must have shape [N, d] = [{len(seeds)}, {self.latent_dim}]; got {z.shape}."
            )
        if not np.all(np.isfinite(z)):
            raise ValueError("latents contain NaN or inf; pass finite start latents.")
        parts = []
        for start in range(0, len(seeds), bs):
            zb, n = shard_batch(jnp.asarray(z[start : start + bs]), bs)
            sb, _ = shard_batch(jnp.asarray(seeds[start : start + bs], jnp.uint32), bs)
            out = self._compiled(zb, sb, on_compile)(zb, sb)
            parts.append({name: np.asarray(v)[:n] for name, v in out.items()})
            if on_batch is not None:
                on_batch(n)
        result = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        result["seeds"] = seeds
        return result


@functools.lru_cache(maxsize=8)
def _cached(identity: str, loader_id: int) -> Experiment:
    del loader_id
    return Experiment(JobConfig(**json.loads(identity)))


def get_experiment(config: JobConfig) -> Experiment:
    """A compiled :class:`Experiment` for ``config``, reused across calls in this process.

    The last 8 configurations are kept (keyed by every field but ``seeds``, ``latents``,
    ``shard_size``, ``batch_size``, ``compress`` and ``format``), so repeated jobs compile once.

    Args:
      config: a :class:`JobConfig`.

    Returns:
      An :class:`Experiment`.
    """
    cfg = config.resolved()
    fields = dataclasses.asdict(cfg)
    for name in ("seeds", "latents", "shard_size", "batch_size", "compress", "format"):
        fields.pop(name)
    fields["vary"], fields["fix"] = list(cfg.vary), list(cfg.fix)
    try:
        identity = json.dumps(fields, sort_keys=True)
    except TypeError:  # model_args / options that JSON cannot hold: no caching
        return Experiment(cfg)
    exp = copy.copy(_cached(identity, id(models.get_entry(cfg.model).loader)))
    exp.config = cfg  # same compiled function; this call's seeds / batch size
    return exp
