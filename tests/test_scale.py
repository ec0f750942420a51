"""Solvers at scale (issue 14): Dense chunks its Grams over a memory budget and refuses huge d
naming MatrixFree; MatrixFree in W+ (d >= 2000) agrees with dense from products only, holds no
[d, d] array, and its adaptive stopping rule reaches its tolerance on the hard rooms case."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from paper_problems import paper_problem, start_latents

import reds_jax
from reds_jax import features as F
from reds_jax.core.jacobians import auto_chunk_size, jacobian_bytes, jaxpr_values
from reds_jax.generators import rooms_oracle


def _wide_generator(d, m, hidden=2000, seed=0):
    """``z [d] -> tanh(W2 tanh(W1 z))`` shaped ``[m // 3, 1, 3]``: every tangent carries a hidden
    value of ``hidden`` entries, much larger than the image (what makes a Jacobian need memory)."""
    rng = np.random.default_rng(seed)
    w1 = jnp.asarray(rng.standard_normal((hidden, d)) / np.sqrt(d))
    w2 = jnp.asarray(rng.standard_normal((m, hidden)) / np.sqrt(hidden))
    return lambda z: jnp.tanh(w2 @ jnp.tanh(w1 @ z)).reshape(m // 3, 1, 3)


def _held(fn, z):
    """Bytes XLA's compiled ``fn`` holds at ``z`` (temporaries + outputs)."""
    mem = jax.jit(fn).lower(z).compile().memory_analysis()
    return mem.temp_size_in_bytes + mem.output_size_in_bytes


def test_dense_chunks_the_grams_only_over_the_memory_budget():
    d, m = 10, 60
    gen = _wide_generator(d, m)
    vary, fix = F.region((0.0, 0.0, 0.5, 1.0)), F.region((0.5, 0.0, 0.5, 1.0))
    z = jnp.linspace(-1.0, 1.0, d)
    whole = jacobian_bytes(gen, (vary, fix), z, "auto")  # XLA's figure for the unchunked program
    assert 0 < whole <= jacobian_bytes(gen, (vary, fix), z, "auto", budget=1)  # <= the bound
    assert auto_chunk_size(gen, (vary, fix), z, "auto", whole) is None
    assert auto_chunk_size(gen, (vary, fix), z, "auto", whole - 1) == d - 1
    budget = whole // 3
    chunk = auto_chunk_size(gen, (vary, fix), z, "auto", budget)
    assert chunk == int(budget // (whole / d)) == 3

    def run(solver):
        problem = reds_jax.Problem(gen, vary, [fix], k=2)
        dirs = lambda z: reds_jax.directions(problem, z, solver=solver)  # noqa: E731
        return dirs(z), _held(lambda z: dirs(z).vectors, z)

    unchunked, big = run(reds_jax.Dense(memory_budget=None))
    auto, small = run(reds_jax.Dense(memory_budget=budget))
    explicit, _ = run(reds_jax.Dense(chunk_size=3))
    assert small < big / 2  # the chunked program holds the hidden values of 3 tangents, not 10
    for got in (auto, explicit):
        np.testing.assert_allclose(
            np.abs(np.sum(got.vectors * unchunked.vectors, -1)), 1.0, atol=1e-8
        )
        np.testing.assert_allclose(got.values, unchunked.values, rtol=1e-8)


@pytest.mark.parametrize("form", ["blocks", "columns", "rows"])
def test_chunked_grams_equal_the_unchunked_grams(form, monkeypatch):
    # blocks: forward mode, the Jacobian built chunk by chunk; columns: J^T (J V) when the whole
    # Jacobian is over JACOBIAN_BYTES; rows: reverse mode (fewer outputs than latents)
    from reds_jax.core import jacobians

    d, m = (10, 60) if form != "rows" else (30, 12)
    gen = _wide_generator(d, m, hidden=50)
    feats = (F.region((0.0, 0.0, 0.5, 1.0)), F.region((0.5, 0.0, 0.5, 1.0)))
    z = jnp.linspace(-1.0, 1.0, d)
    if form == "columns":
        monkeypatch.setattr(jacobians, "JACOBIAN_BYTES", m * d * 8 - 1)
    whole = jacobians.feature_grams(gen, feats, z)
    for chunk in (1, 3, 7):
        got = jacobians.feature_grams(gen, feats, z, chunk_size=chunk)
        np.testing.assert_allclose(got, whole, rtol=1e-12, atol=1e-12)


def test_shipped_models_compute_their_jacobians_in_one_chunk():
    # A structural cost fact (issue 35): at the CLI's defaults the shipped models' Jacobians fit
    # the default budget, so Dense runs them unchunked (one chunk), the fastest form.
    from reds_jax.core.solvers import MEMORY_BUDGET
    from reds_jax.jobs import models
    from reds_jax.jobs.config import JobConfig

    for name in ("faces", "rooms", "rooms_gan"):
        cfg = JobConfig(model=name).resolved()
        model = models.load_model(name)
        feats = models.parse_features(cfg.vary) + models.parse_features(cfg.fix)
        z = jnp.zeros((model.latent_dim,), jnp.dtype(cfg.dtype))
        assert auto_chunk_size(model.generator, feats, z, "auto", MEMORY_BUDGET) is None, name


def test_matrix_free_dense_start_chunks_over_the_memory_budget(monkeypatch):
    # MatrixFree's dense cold start obeys the same budget (at 128 px StyleGAN2 in W its unchunked
    # start Jacobian peaked at 14.5 GB); the start directions do not change.
    from reds_jax.core.solvers import base

    d, m = 10, 60
    gen = _wide_generator(d, m)
    vary, fix = F.region((0.0, 0.0, 0.5, 1.0)), F.region((0.5, 0.0, 0.5, 1.0))
    z = jnp.linspace(-1.0, 1.0, d)
    mf = reds_jax.MatrixFree(cold_start="dense")

    def run():
        problem = reds_jax.Problem(gen, vary, [fix], k=2)
        dirs = lambda z: reds_jax.directions(problem, z, solver=mf)  # noqa: E731
        return dirs(z), _held(lambda z: dirs(z).vectors, z)

    whole, big = run()
    monkeypatch.setattr(base, "MEMORY_BUDGET", jacobian_bytes(gen, (vary, fix), z, "auto") // 3)
    jax.clear_caches()  # the budget is read when the start is traced
    auto, small = run()
    assert small < big / 2
    np.testing.assert_allclose(np.abs(np.sum(auto.vectors * whole.vectors, -1)), 1.0, atol=1e-6)
    np.testing.assert_allclose(auto.values, whole.values, rtol=1e-6)


def test_dense_refuses_a_huge_latent_and_names_matrix_free():
    d = 5000
    gen = lambda z: jnp.tanh(z[:12]).reshape(2, 2, 3)  # noqa: E731
    problem = reds_jax.Problem(
        gen, F.region((0.0, 0.0, 0.5, 1.0)), [F.region((0.5, 0.0, 0.5, 1.0))]
    )
    z = jnp.zeros(d)
    with pytest.raises(ValueError, match=r"d=5000.*MatrixFree\(\).*Dense\(max_d=None\)"):
        reds_jax.directions(problem, z)
    with pytest.raises(ValueError, match=r"d=12 .*MatrixFree"):
        reds_jax.directions(problem, z[:12], solver=reds_jax.Dense(max_d=8))
    with pytest.raises(ValueError, match="cold_start='auto'"):
        reds_jax.directions(problem, z, solver=reds_jax.MatrixFree(cold_start="dense"))
    with pytest.raises(ValueError, match="memory_budget must be"):
        reds_jax.Dense(memory_budget=0)
    with pytest.raises(ValueError, match="tol must be a finite number"):
        reds_jax.MatrixFree(tol=-1.0)


@pytest.fixture(scope="module")
def wplus():
    """A 16 px StyleGAN2 in W+ (d = 2304), hair box varied, background held."""
    gen, vary, fix, d, g = paper_problem("tiny", "hair", "w+")
    z0 = start_latents(g, 1, seed=3, dtype=jnp.float64)[0]
    return gen, vary, fix[1:], d, z0


def test_matrix_free_in_w_plus_agrees_with_dense_from_products_only(wplus):
    gen, vary, fix, d, z0 = wplus
    assert d >= 2000
    problem = reds_jax.Problem(gen, vary, fix)
    dense = reds_jax.directions(problem, z0, solver=reds_jax.Dense(max_d=None))
    solver = reds_jax.MatrixFree(cold_tol=1e-8, cold_iters=200, probes=16)
    assert solver.cold(d) == "iterative"  # no Gram at this d
    mf = reds_jax.directions(problem, z0, solver=solver, key=jax.random.key(0))
    cos = abs(float(jnp.dot(mf.vectors[0], dense.vectors[0])))
    assert cos > 0.999, cos

    def quotient(v):  # ‖J_vary v‖² / ‖J_fix v‖²: the Rayleigh quotient up to the Gram norms
        out = [jax.jvp(lambda z, f=f: f(gen(z)), (z0,), (v,))[1] for f in (*vary, *fix)]
        return float(jnp.sum(out[0] ** 2) / jnp.sum(out[1] ** 2))

    assert quotient(mf.vectors[0]) >= quotient(dense.vectors[0]) * (1 - 1e-4)
    # float64, 200 iterations from products only: the direction agrees (above) while the residual
    # is still ~4e-3 (measured): the cap, not cold_tol, stopped it, and the diagnostics say so.
    assert float(mf.diagnostics.residual) <= 1e-2
    assert int(mf.diagnostics.iterations) == 200
    assert int(mf.diagnostics.capped_solves) == 1  # ... and so does the status
    assert reds_jax.RESULTS.describe(mf.diagnostics.status) == ["cap_reached"]


def test_matrix_free_program_holds_no_d_by_d_array(wplus):
    gen, vary, fix, d, z0 = wplus

    def program(solver):
        def run(z):
            problem = reds_jax.Problem(gen, vary, fix)
            return reds_jax.traverse(problem, z, steps=2, solver=solver).latents

        return jax.make_jaxpr(run)(z0)

    def square(jaxpr):
        shapes = [tuple(v.aval.shape) for v in jaxpr_values(jaxpr) if hasattr(v.aval, "shape")]
        return [s for s in shapes if sum(n >= d for n in s) >= 2]

    assert square(program(reds_jax.MatrixFree(tol=1e-3))) == []
    assert square(program(reds_jax.Dense(max_d=None)))  # the check sees a dense program's Grams


def test_adaptive_rule_reaches_its_tolerance_on_the_hard_rooms_case():
    # Low-pass varied, high-pass fixed on the procedural rooms: B nearly singular on the answer.
    oracle = rooms_oracle(latent_dim=8, size=16)
    problem = reds_jax.Problem(oracle.generator, F.lowpass(2.0), [F.highpass(1.0)])
    kw = dict(steps=4, step=reds_jax.FixedStep(0.25))
    z0 = jax.random.normal(jax.random.key(0), (2, 8), jnp.float64)
    dense = reds_jax.traverse(problem, z0, **kw)
    tol = 1e-6
    solver = reds_jax.MatrixFree(tol=tol, max_iters=40, turn_tol=None)
    mf = reds_jax.traverse(problem, z0, solver=solver, **kw)
    res = np.asarray(mf.diagnostics.residual)[..., :-1]  # every solve (the last latent has none)
    assert np.all(res <= tol), res.max()
    steps = 4
    assert np.all(np.asarray(mf.diagnostics.iterations) >= steps)  # it iterated, adaptively
    da, db = np.diff(np.asarray(dense.latents), axis=-2), np.diff(np.asarray(mf.latents), axis=-2)
    cos = np.abs(np.sum(da * db, -1)) / (np.linalg.norm(da, axis=-1) * np.linalg.norm(db, axis=-1))
    assert cos.min() >= 0.98, cos
