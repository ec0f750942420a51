"""Solver objects (validation, the Solver interface a user can implement), the per-latent
traversal, the diagnostics and status of every numerical fallback, and matrix-free values as true
Rayleigh quotients."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import reds_jax
from reds_jax import FixedStep, Problem
from reds_jax import features as F
from reds_jax.core import lobpcg, matrix_free

D = 6
W = jnp.asarray(np.random.default_rng(0).standard_normal((16, D)))


def linear_gen(z):  # [6] -> [4, 4, 1]
    return (W @ z).reshape(4, 4, 1)


def curved_gen(z):
    return jnp.tanh(W @ z + 0.3 * (W @ z) ** 2).reshape(4, 4, 1)


TOP, BOTTOM = F.region((0, 0, 1, 4)), F.region((1, 0, 3, 4))
PROBLEM = Problem(curved_gen, vary=BOTTOM, fix=[TOP], k=2)
KW = dict(steps=3, step=FixedStep(0.2))
SOLVERS = [reds_jax.Dense(), reds_jax.MatrixFree(iters=2)]


def test_solver_objects_are_hashable_and_validated():
    assert hash(reds_jax.MatrixFree(iters=3)) == hash(reds_jax.MatrixFree(iters=3))
    assert reds_jax.Dense() == reds_jax.Dense(mode="auto", chunk_size=None, eps=None)
    for kwargs, match in [
        ({"iters": 0}, "iters must be an int >= 1"),
        ({"guard": -1}, "guard must be"),
        ({"cold_start": "warm"}, "cold_start="),
        ({"precond": "always"}, "precond="),
        ({"sketch": 0}, "sketch must be"),
        ({"mode": "fd"}, "mode='fd'"),
        ({"chunk_size": 0}, "chunk_size must be"),
    ]:
        with pytest.raises(ValueError, match=match):
            reds_jax.MatrixFree(**kwargs)
    with pytest.raises(ValueError, match="mode="):
        reds_jax.Dense(mode="sideways")
    with pytest.raises(ValueError, match="eps must be"):
        reds_jax.Dense(eps=0.0)
    minf = Problem(curved_gen, vary=BOTTOM, fix=[TOP], method="minf")
    with pytest.raises(ValueError, match="supports method"):
        reds_jax.traverse(minf, jnp.zeros(D), solver=reds_jax.MatrixFree())


def test_fd_official_takes_the_step_size_unless_eps_is_given():
    dense = reds_jax.Dense(mode="fd_official")
    assert dense.for_step(0.25).eps == 0.25
    assert reds_jax.Dense(mode="fd_official", eps=1e-4).for_step(0.25).eps == 1e-4  # explicit
    assert reds_jax.Dense(mode="fd").for_step(0.25).eps is None  # 1e-3 at solve time
    assert reds_jax.MatrixFree().for_step(0.25) == reds_jax.MatrixFree()


@dataclasses.dataclass(frozen=True)
class TopOfVary(reds_jax.Solver):
    """A user's solver: maxc from the public gram(), dense eigh, the whole system as the span."""

    def _system(self, problem, z):
        feature = problem.vary[0]
        a = reds_jax.gram(lambda u: jnp.ravel(feature(problem.generator(u))), z)
        values, vectors = jnp.linalg.eigh(a / jnp.linalg.norm(a))  # normalised, as Dense
        rows = vectors[:, ::-1].T
        pivot = jnp.take_along_axis(rows, jnp.argmax(jnp.abs(rows), axis=1)[:, None], axis=1)
        return values[::-1], rows * jnp.where(pivot < 0, -1.0, 1.0)  # largest entry positive

    def start(self, problem, z, key):
        values, vectors = self._system(problem, z)
        k = problem.k
        diag = reds_jax.Diagnostics.zeros(z.dtype)
        return reds_jax.Start(values[:k], vectors[:k], None, None, diag)

    def track(self, problem, context, z, state, key):
        _, vectors = self._system(problem, z)
        span = jnp.ones((problem.k,), z.dtype)
        return reds_jax.Step(vectors[: problem.k], span, state, reds_jax.Diagnostics.zeros(z.dtype))


def test_a_user_written_solver_runs_through_traverse_and_matches_dense():
    problem = Problem(curved_gen, vary=BOTTOM, method="maxc", k=2)
    z0 = jax.random.normal(jax.random.key(0), (2, D))
    mine = reds_jax.traverse(problem, z0, solver=TopOfVary(), steps=3, throw=True)
    dense = reds_jax.traverse(problem, z0, steps=3)
    np.testing.assert_allclose(mine.latents, dense.latents, atol=1e-8)
    np.testing.assert_allclose(mine.values, dense.values, rtol=1e-8)
    assert mine.diagnostics.status.shape == (2, 4, 4)
    with pytest.raises(TypeError, match="abstract"):
        reds_jax.Solver()


def test_traverse_one_under_jit_vmap_equals_traverse():
    z0 = jax.random.normal(jax.random.key(1), (3, D))
    keys = jax.random.split(jax.random.key(0), 3)
    for solver in SOLVERS:
        ref = reds_jax.traverse(PROBLEM, z0, solver=solver, **KW)

        def one(z, key, s=solver):
            return reds_jax.traverse_one(PROBLEM, z, key, solver=s, **KW)

        got = jax.jit(jax.vmap(one))(z0, keys)
        np.testing.assert_allclose(got.latents, ref.latents, atol=1e-10)
        np.testing.assert_allclose(got.fix_distances[0], ref.fix_distances[0], atol=1e-10)
        bare = reds_jax.traverse_one(PROBLEM, z0[0], keys[0], solver=solver, distances=False, **KW)
        assert bare.vary_distances == () and bare.fix_distances == ()
        np.testing.assert_allclose(bare.latents, ref.latents[0], atol=1e-10)


def test_healthy_traversal_reports_zeros_with_the_same_structure_for_both_solvers():
    z0 = jax.random.normal(jax.random.key(2), (2, D))
    trees = []
    for solver in SOLVERS:
        tr = reds_jax.traverse(PROBLEM, z0, solver=solver, **KW)
        diag = tr.diagnostics
        assert diag.nonzero() == {}
        assert diag.kept_direction.shape == (2, 4) and diag.kept_direction.dtype == jnp.int32
        assert diag.residual.shape == (2, 4, 4)
        assert bool(jnp.all(jnp.isfinite(diag.residual)))
        trees.append(jax.tree_util.tree_structure(diag))
    assert trees[0] == trees[1]
    np.testing.assert_array_equal(reds_jax.traverse(PROBLEM, z0, **KW).diagnostics.residual, 0)
    mf = reds_jax.traverse(PROBLEM, z0, solver=SOLVERS[1], **KW).diagnostics.residual
    assert float(mf[..., 0].max()) < 1e-6  # converged start (50 preconditioned iterations)
    assert float(mf[..., 1:3].max()) > 0  # tracking steps measure their residual
    np.testing.assert_array_equal(mf[..., -1], 0)  # no solve at the last latent


def test_status_reports_each_step_and_path_and_throw_raises():
    z0 = jax.random.normal(jax.random.key(2), (2, D))
    kw = dict(steps=3, step=FixedStep(0.2))
    healthy = reds_jax.traverse(Problem(curved_gen, BOTTOM, [TOP]), z0, throw=True, **kw)
    np.testing.assert_array_equal(healthy.diagnostics.status, 0)

    # A fixed feature that is constant: every solve falls back to maxc's answer (solve_fallback).
    def zero(img):
        return jnp.zeros(3, img.dtype)

    zeroed = Problem(curved_gen, BOTTOM, [zero])
    tr = reds_jax.traverse(zeroed, z0, **kw)
    assert tr.diagnostics.status.shape == (2, 2, 4)
    fallback = int(reds_jax.RESULTS.fallback)
    np.testing.assert_array_equal(tr.diagnostics.status[..., :3], fallback)  # start + 2 tracks
    np.testing.assert_array_equal(tr.diagnostics.status[..., 3], 0)  # no solve at the end
    np.testing.assert_array_equal(tr.status, fallback)
    np.testing.assert_array_equal(tr.diagnostics.solve_fallback, 3)
    assert reds_jax.RESULTS.describe(tr.status) == ["fallback"]
    with pytest.raises(RuntimeError, match=r"traverse did not succeed.*\['fallback'\]"):
        reds_jax.traverse(zeroed, z0, throw=True, **kw)
    dirs = reds_jax.directions(zeroed, z0)
    np.testing.assert_array_equal(dirs.diagnostics.status, fallback)
    # An unreachable tolerance: each tracking solve stops at its cap (max_iters), reported as such.
    capped = reds_jax.MatrixFree(tol=1e-300, max_iters=2, turn_tol=None, cold_tol=None)
    mf = reds_jax.traverse(Problem(curved_gen, BOTTOM, [TOP]), z0, solver=capped, **kw).diagnostics
    np.testing.assert_array_equal(mf.capped_solves, 2)
    np.testing.assert_array_equal(mf.iterations, 50 + 2 * 2)  # cold_iters, then 2 per track
    np.testing.assert_array_equal(mf.status[..., 1:3], int(reds_jax.RESULTS.cap_reached))
    np.testing.assert_array_equal(mf.status[..., 0], 0)
    assert mf.nonzero() == {}  # a cap is a designed stop, not a fallback count


@pytest.mark.parametrize("solver", SOLVERS, ids=["dense", "matrix_free"])
def test_zero_fixed_gram_reports_solve_fallback(solver):
    const = lambda img: jnp.zeros(3)  # noqa: E731
    z0 = jax.random.normal(jax.random.key(3), (D,))
    problem = Problem(curved_gen, vary=BOTTOM, fix=[const])
    tr = reds_jax.traverse(problem, z0, steps=3, solver=solver)
    np.testing.assert_array_equal(tr.diagnostics.solve_fallback, [3, 3])  # start + 2 steps
    dirs = reds_jax.directions(problem, z0, solver=solver)
    assert int(dirs.diagnostics.solve_fallback) == 1


@pytest.mark.parametrize("solver", SOLVERS, ids=["dense", "matrix_free"])
def test_ridge_below_the_precision_floor_is_reported(solver):
    z0 = jax.random.normal(jax.random.key(4), (2, D))
    dirs = reds_jax.directions(Problem(curved_gen, BOTTOM, [TOP], ridge=0.0), z0, solver=solver)
    np.testing.assert_array_equal(dirs.diagnostics.ridge_raised, [1, 1])
    dirs = reds_jax.directions(Problem(curved_gen, BOTTOM, [TOP], ridge=1e-3), z0, solver=solver)
    np.testing.assert_array_equal(dirs.diagnostics.ridge_raised, [0, 0])


@pytest.mark.parametrize("solver", SOLVERS, ids=["dense", "matrix_free"])
def test_non_finite_jacobian_entries_are_counted(solver):
    def gen(z):  # sqrt has an infinite derivative at z[0] = -1
        return curved_gen(z).at[0, 0, 0].set(jnp.sqrt(jnp.abs(z[0] + 1.0)))

    z0 = jnp.zeros(D).at[0].set(-1.0)
    dirs = reds_jax.directions(Problem(gen, F.pixels(), [TOP]), z0, solver=solver)
    assert int(dirs.diagnostics.nonfinite_jacobian) >= 1
    assert reds_jax.RESULTS.describe(dirs.diagnostics.status) == ["nonfinite"]
    healthy = reds_jax.directions(Problem(curved_gen, F.pixels(), [TOP]), z0, solver=solver)
    assert int(healthy.diagnostics.nonfinite_jacobian) == 0


@pytest.mark.parametrize("solver", SOLVERS, ids=["dense", "matrix_free"])
def test_vanishing_projection_keeps_the_direction_and_is_counted(solver):
    # Pixel 0 follows z[0] only while z[0] < 0.15; pixel 1 is 0.1·z[1]. At 0 the top maxc
    # direction is e0; at z[0] = 0.2 it is e1, orthogonal to e0: the + path keeps e0.
    def gen(z):
        return jnp.stack([jnp.where(z[0] < 0.15, z[0], 0.0), 0.1 * z[1]]).reshape(1, 2, 1)

    problem = Problem(gen, vary=F.pixels(), method="maxc")
    tr = reds_jax.traverse(problem, jnp.zeros(2), steps=3, solver=solver)
    np.testing.assert_array_equal(tr.diagnostics.kept_direction, [1, 0])
    np.testing.assert_allclose(tr.latents[0, -1], [0.3, 0.0], atol=1e-12)


def test_skipped_lobpcg_iterations_are_counted():
    jac = jnp.diag(jnp.array([1.0, 2.0, 3.0]))

    class RawPencil(matrix_free.ProductPencil):  # products not sanitised: NaN reaches LOBPCG
        def apply(self, x):
            return jax.vmap(self.jv)(x), jnp.zeros((), jnp.int32)

    def jv(u):
        return jnp.where(jnp.abs(u[2]) > 0.5, jnp.nan, 1.0) * (jac @ u)

    pencil = RawPencil.build(jv, lambda w: jac.T @ w, (3,), 1, jnp.ones(1), jnp.asarray(1.0))
    res = lobpcg.lobpcg(pencil, jnp.asarray([[1.0, 0.0, 0.4]]), 3)
    assert int(res.skipped) >= 1
    np.testing.assert_allclose(np.asarray(res.x[0]) / np.asarray(res.x[0, 0]), [1, 0, 0.4])
    sanitized = matrix_free.ProductPencil.build(
        jv, lambda w: jac.T @ w, (3,), 1, jnp.ones(1), jnp.asarray(1.0)
    )
    assert int(lobpcg.lobpcg(sanitized, jnp.asarray([[1.0, 0.0, 0.4]]), 3).nonfinite) >= 1


def test_matrix_free_values_are_true_rayleigh_quotients_when_fix_covers_vary():
    # Issue 20 item 1: vary = fix = pixels, so every quotient vᵀAv / vᵀ(A + λI)v is <= 1.
    from reds_jax.generators import rooms_oracle

    oracle = rooms_oracle(latent_dim=8, size=32)
    z = jax.random.normal(jax.random.key(0), (2, 8))
    for dtype, tol in ((jnp.float64, 1e-9), (jnp.float32, 1e-4)):
        problem = Problem(oracle.generator, vary=F.pixels(), fix=[F.pixels()], k=2)
        dense = reds_jax.directions(problem, z.astype(dtype))
        mf = reds_jax.directions(problem, z.astype(dtype), solver=reds_jax.MatrixFree())
        assert float(jnp.max(mf.values)) <= 1.0
        np.testing.assert_allclose(mf.values, dense.values, atol=tol)


def test_matrix_free_values_match_scipy_on_a_linear_generator():
    w = np.asarray(W)
    a, b = w[4:].T @ w[4:], w[:4].T @ w[:4]
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    ref = scipy.linalg.eigh(a, b + 1e-3 * np.eye(D), eigvals_only=True)[::-1][:2]
    problem = Problem(linear_gen, vary=BOTTOM, fix=[TOP], k=2, ridge=1e-3)
    mf = reds_jax.directions(problem, jnp.zeros(D), solver=reds_jax.MatrixFree())
    np.testing.assert_allclose(mf.values, ref, rtol=1e-8)
