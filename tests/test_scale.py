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
from reds_jax.core.jacobians import LIVE_VALUES, auto_chunk_size, jaxpr_values, largest_value
from reds_jax.generators import rooms_oracle


def _linear_generator(d, m, seed=0):
    w = jnp.asarray(np.random.default_rng(seed).standard_normal((m, d)) / np.sqrt(d))
    return lambda z: jnp.tanh(w @ z).reshape(m // 3, 1, 3)


def test_dense_chunks_the_grams_over_the_memory_budget():
    d, m = 10, 600
    gen = _linear_generator(d, m)
    vary, fix = F.region((0.0, 0.0, 0.5, 1.0)), F.region((0.5, 0.0, 0.5, 1.0))
    z = jnp.linspace(-1.0, 1.0, d)
    # d forward tangents, each carrying LIVE_VALUES values of the largest size (m: tanh(W z)),
    # 8 bytes an entry
    w = LIVE_VALUES * m
    assert largest_value(gen, z) == m
    assert auto_chunk_size(gen, (vary, fix), z, "auto", d * w * 8) is None
    assert auto_chunk_size(gen, (vary, fix), z, "auto", d * w * 8 - 1) == d - 1
    assert auto_chunk_size(gen, (vary, fix), z, "auto", 3 * w * 8) == 3

    def run(solver):
        dirs = lambda z: reds_jax.directions(gen, z, vary=vary, fix=[fix], k=2, solver=solver)  # noqa: E731
        return dirs(z), largest_value(lambda z: dirs(z).vectors, z)

    whole, big = run(reds_jax.Dense(memory_budget=None))
    auto, small = run(reds_jax.Dense(memory_budget=3 * LIVE_VALUES * m * 8))
    explicit, _ = run(reds_jax.Dense(chunk_size=3))
    assert big >= m * d > small  # the full Jacobian is gone from the program
    for got in (auto, explicit):
        np.testing.assert_allclose(np.abs(np.sum(got.vectors * whole.vectors, -1)), 1.0, atol=1e-8)
        np.testing.assert_allclose(got.values, whole.values, rtol=1e-8)


def test_matrix_free_dense_start_chunks_over_the_memory_budget(monkeypatch):
    # MatrixFree's dense cold start obeys the same budget (at 128 px StyleGAN2 in W its unchunked
    # start Jacobian peaked at 14.5 GB); the start directions do not change.
    from reds_jax.core import solvers

    d, m = 10, 600
    gen = _linear_generator(d, m)
    vary, fix = F.region((0.0, 0.0, 0.5, 1.0)), F.region((0.5, 0.0, 0.5, 1.0))
    z = jnp.linspace(-1.0, 1.0, d)
    mf = reds_jax.MatrixFree(cold_start="dense")

    def run():
        dirs = lambda z: reds_jax.directions(gen, z, vary=vary, fix=[fix], k=2, solver=mf)  # noqa: E731
        return dirs(z), largest_value(lambda z: dirs(z).vectors, z)

    whole, big = run()
    monkeypatch.setattr(solvers, "MEMORY_BUDGET", 3 * LIVE_VALUES * m * 8)
    jax.clear_caches()  # the budget is read when the start is traced
    auto, small = run()
    assert big >= m * d > small
    np.testing.assert_allclose(np.abs(np.sum(auto.vectors * whole.vectors, -1)), 1.0, atol=1e-6)
    np.testing.assert_allclose(auto.values, whole.values, rtol=1e-6)


def test_dense_refuses_a_huge_latent_and_names_matrix_free():
    d = 5000
    gen = lambda z: jnp.tanh(z[:12]).reshape(2, 2, 3)  # noqa: E731
    kw = dict(vary=F.region((0.0, 0.0, 0.5, 1.0)), fix=[F.region((0.5, 0.0, 0.5, 1.0))])
    z = jnp.zeros(d)
    with pytest.raises(ValueError, match=r"d=5000.*MatrixFree\(\).*Dense\(max_d=None\)"):
        reds_jax.directions(gen, z, **kw)
    with pytest.raises(ValueError, match=r"d=12 .*MatrixFree"):
        reds_jax.directions(gen, z[:12], solver=reds_jax.Dense(max_d=8), **kw)
    with pytest.raises(ValueError, match="cold_start='auto'"):
        reds_jax.directions(gen, z, solver=reds_jax.MatrixFree(cold_start="dense"), **kw)
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
