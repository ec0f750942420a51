"""Matrix-free tracking solver: LOBPCG against the dense generalised solve, whole-path agreement
with the dense solver on a tiny conv generator, one compile, sharding, bad input, fallbacks."""

import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from bench_problems import conv_generator
from helpers import arrays_on_devices

import reds_jax
from reds_jax import FixedStep, MatrixFree, Problem
from reds_jax import features as F
from reds_jax.core import linalg, lobpcg, matrix_free

D = 12
GEN = conv_generator(D, size=8, channels=(6, 4), dtype=jnp.float64)
VARY, FIX = F.region((0.0, 0.0, 0.5, 1.0)), F.region((0.5, 0.0, 0.5, 1.0))  # top / bottom half
PROBLEM = Problem(GEN, vary=VARY, fix=[FIX])
KW = dict(steps=8, step=FixedStep(0.3))


def step_cosines(a, b):
    """|cos| between the per-step directions of two path sets ``[..., T+1, d]``."""
    da, db = np.diff(np.asarray(a), axis=-2), np.diff(np.asarray(b), axis=-2)
    dots = np.abs(np.sum(da * db, axis=-1))
    return dots / (np.linalg.norm(da, axis=-1) * np.linalg.norm(db, axis=-1))


def test_lobpcg_converges_to_the_generalised_eigenvectors():
    rng = np.random.default_rng(0)
    # Preconditioned by (B + λI)⁻¹ on an ill-conditioned pencil: a few iterations; without a
    # preconditioner on a milder one: more (convergence then depends on B's conditioning).
    for spread, precondition, iters in ((1e-3, True, 8), (1e-1, False, 60)):
        jac = rng.standard_normal((30, D)) * np.geomspace(1.0, spread, D)[None, :]
        jac_v, jac_f = jac[:14], jac[14:]
        a, b, lam = jac_v.T @ jac_v, jac_f.T @ jac_f, 1e-4
        vals, vecs = scipy.linalg.eigh(a, b + lam * np.eye(D))
        ref = vecs[:, ::-1][:, :2].T
        ref /= np.linalg.norm(ref, axis=1, keepdims=True)
        jj = jnp.asarray(jac)
        pinv = jnp.asarray(np.linalg.inv(b + lam * np.eye(D))) if precondition else None
        x0 = jnp.asarray(rng.standard_normal((3, D)))

        def solve(x, jj=jj, pinv=pinv, iters=iters, lam=lam):
            pencil = matrix_free.ProductPencil.build(
                lambda u: jj @ u, lambda w: jj.T @ w, (14, 16), 1, jnp.ones(2), jnp.asarray(lam),
                pinv,
            )  # fmt: skip
            res = lobpcg.lobpcg(pencil, x, iters)
            return res.theta, res.x

        theta, x = jax.jit(solve)(x0)
        x = np.asarray(x[:2]) / np.linalg.norm(x[:2], axis=1, keepdims=True)
        np.testing.assert_allclose(np.abs(np.sum(x * ref, axis=1)), 1.0, atol=1e-8)
        np.testing.assert_allclose(theta[:2], vals[::-1][:2], rtol=1e-6)


def test_turn_rule_stops_a_block_stalled_above_an_unreachable_tolerance():
    # float32 with tol = 1e-9: the residual stalls near 1e-6 and the residual rule runs to its
    # cap; the turn rule stops once two iterations in a row barely move the top vector, at the
    # same answer.
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    a = q @ np.diag(np.arange(1.0, 21.0)) @ q.T
    m = rng.normal(size=(20, 20))
    b = np.eye(20) + 0.1 * m @ m.T
    vals, vecs = scipy.linalg.eigh(a, b)
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    pencil = matrix_free.ExplicitPencil.build(f32(a), f32(b), 0.0)
    x0 = f32(rng.normal(size=(2, 20)))
    runs = {}
    for turn in (None, 1e-4):
        res = lobpcg.lobpcg(pencil, x0, 100, tol=1e-9, check=1, turn_tol=turn)
        x = np.asarray(res.x[0], np.float64)
        sine = np.sqrt(max(0.0, 1 - (x @ vecs[:, -1]) ** 2 / (x @ x) / (vecs[:, -1] @ vecs[:, -1])))
        runs[turn] = int(res.iterations), sine, float(res.theta[0])
    assert runs[None][0] == 100 and runs[1e-4][0] < 30, runs
    for _its, sine, theta in runs.values():
        assert sine < 1e-4, runs
        np.testing.assert_allclose(theta, vals[-1], rtol=1e-5)
    # Warm-started at the answer: the Rayleigh-Ritz step on the start block counts as the first
    # small turn, so one iteration ends it (the residual rule alone still runs to its cap).
    x_exact = f32(vecs[:, ::-1][:, :2].T)
    warm = lobpcg.lobpcg(pencil, x_exact, 100, tol=1e-9, check=1, turn_tol=1e-4)
    assert int(warm.iterations) == 1
    assert int(lobpcg.lobpcg(pencil, x_exact, 100, tol=1e-9, check=1).iterations) == 100


def test_turn_rule_needs_two_small_turns_in_a_row():
    # The stopping decision of the adaptive loop: the residuals of the checked pairs, or the last
    # two turns (float32 turns on a nearly singular B jitter below and above turn_tol).
    res = jnp.asarray([0.5, 1e-3])  # the first checked pair is not converged

    def stop(res, turns, turn_tol=1e-2):
        return bool(lobpcg.converged(res, 1e-2, jnp.asarray(turns), turn_tol))

    assert not stop(res, [jnp.inf, 1e-3])  # one small turn (the first iteration)
    assert not stop(res, [0.05, 1e-3])  # one small turn after a large one
    assert not stop(res, [1e-3, 0.05])
    assert stop(res, [9e-3, 1e-3])
    assert stop(res, [1e-2, 1e-2])  # at the tolerance
    assert stop(jnp.asarray([1e-2, 1e-3]), [jnp.inf, jnp.inf])  # the residual rule alone
    assert not stop(res, [0.0, 0.0], turn_tol=-1.0)  # turn_tol=None is passed as -1: no turn rule


@pytest.mark.parametrize("q", [1, 2, 5, 8])
def test_small_eigh_and_projection_match_numpy(q):
    rng = np.random.default_rng(q)
    a = rng.standard_normal((q, q))
    a = a @ a.T + np.diag(np.geomspace(1.0, 1e-6, q))
    values, vectors = linalg.small_eigh(jnp.asarray(a))
    ref = np.linalg.eigh(a)[0][::-1]
    np.testing.assert_allclose(values, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        np.asarray(vectors) @ np.diag(values) @ np.asarray(vectors).T, a, atol=1e-10
    )
    rows, v = rng.standard_normal((q, 2 * q + 1)), rng.standard_normal(2 * q + 1)
    proj = rows.T @ np.linalg.solve(rows @ rows.T, rows @ v)
    np.testing.assert_allclose(linalg.project(jnp.asarray(v), jnp.asarray(rows)), proj, atol=1e-10)


def test_paths_agree_with_dense_along_the_whole_path():
    z0 = jax.random.normal(jax.random.key(1), (3, D))
    dense = reds_jax.traverse(PROBLEM, z0, **KW)
    mf = reds_jax.traverse(PROBLEM, z0, solver=MatrixFree(), **KW)
    np.testing.assert_allclose(mf.values, dense.values, rtol=1e-8)  # converged start
    cos = step_cosines(dense.latents, mf.latents)  # [N, 2k, T]
    assert cos.mean() >= 0.99 and cos[..., 0].min() > 1 - 1e-8
    drift_d = np.asarray(dense.fix_distances[0][..., -1])
    drift_m = np.asarray(mf.fix_distances[0][..., -1])
    np.testing.assert_allclose(np.median(drift_m), np.median(drift_d), rtol=0.1)
    steps = np.linalg.norm(np.diff(np.asarray(mf.latents), axis=-2), axis=-1)
    np.testing.assert_allclose(steps, 0.3, rtol=1e-10)


def test_iterative_cold_start_sketch_and_maxc():
    z = jax.random.normal(jax.random.key(2), (D,))
    two = Problem(GEN, vary=VARY, fix=[FIX], k=2)
    dense = reds_jax.directions(two, z)
    cold = reds_jax.directions(two, z, solver=MatrixFree(cold_start="iterative"))
    cos = np.abs(np.sum(np.asarray(dense.vectors) * np.asarray(cold.vectors), axis=-1))
    np.testing.assert_allclose(cos, 1.0, atol=1e-6)
    small = reds_jax.directions(PROBLEM, z, solver=MatrixFree(sketch=48))
    assert bool(jnp.all(jnp.isfinite(small.vectors)))
    z0 = z[None]
    maxc = Problem(GEN, vary=VARY, method="maxc")
    kw = dict(steps=5, step=FixedStep(0.3))
    dense_maxc = reds_jax.traverse(maxc, z0, **kw)
    mf_maxc = reds_jax.traverse(maxc, z0, solver=MatrixFree(), **kw)
    assert step_cosines(dense_maxc.latents, mf_maxc.latents).mean() >= 0.99


def test_iterative_start_raises_the_ridge_as_the_dense_solver_does():
    # float32, B's spectrum spread over 8 decades: the ridge floor 10·d·eps·max diag(B) is active.
    # The products-only start must find the dense solver's λ (from its Nyström diagonal, a lower
    # bound of diag B); an upper bound of ‖B‖_F (what it used before) was 5.3× too large here,
    # and at paper scale (StyleSpace, d = 448) 8.4× too large, which turned the answer by
    # |cos| 0.79.
    d = 40
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    jf = rng.standard_normal((48, d)) @ np.diag(np.geomspace(1.0, 1e-4, d)) @ q.T
    jac = jnp.asarray(np.concatenate([rng.standard_normal((16, d)), jf]), jnp.float32)
    gen = lambda z: (jac @ z).reshape(8, 8, 1)  # noqa: E731
    problem = Problem(gen, [lambda im: im[:2]], [lambda im: im[2:]]).at(jnp.zeros(d, jnp.float32))
    solver = MatrixFree(cold_start="iterative")
    b = jf.T @ jf
    b /= np.linalg.norm(b)  # the Gram over its Frobenius norm (weight 1)
    floor = 10 * d * np.finfo(np.float32).eps * b.diagonal().max()
    assert floor > problem.ridge  # the floor is what sets λ here
    start = jax.jit(lambda z: solver.start(problem, z, jax.random.key(0)))(
        jnp.zeros(d, jnp.float32)
    )
    assert int(start.diagnostics.ridge_raised) == 1
    # Nyström (32 probes of d = 40) underestimates max diag B a little; Hutchinson's norm is an
    # estimate too (relative s.d. <= √(2/32)).
    assert 0.6 * floor <= float(start.context.lam) <= 1.1 * floor


def test_iterative_start_block_takes_a_preconditioned_power_step_from_the_probes():
    # d = 200, a 16-row varied Jacobian and a fixed one with a spread spectrum: after 3 start
    # iterations the block from span{g, T A g} is at |cos| 0.58 to scipy's top direction; from
    # the probes' span alone it was at 0.10 (at paper scale, W+ hair, an unlucky probe draw left
    # the start at 0.980 after 50 iterations; 0.999 with the power step).
    d = 200
    rng = np.random.default_rng(5)
    ja = rng.standard_normal((16, d))
    jf = rng.standard_normal((d - 20, d)) * np.geomspace(1.0, 1e-2, d)[None, :]
    jac = jnp.asarray(np.concatenate([ja, jf]))
    gen = lambda z: (jac @ z).reshape(-1, 1, 1)  # noqa: E731
    problem = Problem(gen, [lambda im: im[:16]], [lambda im: im[16:]]).at(jnp.zeros(d))
    solver = MatrixFree(cold_start="iterative", cold_iters=3, cold_tol=None)
    start = jax.jit(lambda z: solver.start(problem, z, jax.random.key(0)))(jnp.zeros(d))
    scales, lam = np.asarray(start.context.scales), float(start.context.lam)
    a = scales[0] * ja.T @ ja
    b = scales[1] * jf.T @ jf + lam * np.eye(d)
    top = scipy.linalg.eigh(a, b)[1][:, -1]
    x = np.asarray(start.vectors[0])
    cos = abs(x @ top) / (np.linalg.norm(x) * np.linalg.norm(top))
    assert cos >= 0.5
    assert int(start.diagnostics.iterations) == 3


def test_nystrom_is_exact_on_the_probe_span_and_bounds_the_diagonal():
    d, r = 30, 10
    rng = np.random.default_rng(4)
    jf = rng.standard_normal((d, d)) * np.geomspace(1.0, 1e-3, d)[None, :]
    b = jf.T @ jf
    omega = rng.standard_normal((r, d))
    u, sigma = matrix_free.nystrom(jnp.asarray(omega), jnp.asarray(omega @ b))
    u, sigma = np.asarray(u), np.asarray(sigma)
    approx = u.T @ np.diag(sigma) @ u
    # B̂ = (BΩᵀ)(ΩBΩᵀ)⁻¹(ΩB): equal to B on the probes' span, below B everywhere (PSD order).
    exact = (b @ omega.T) @ np.linalg.solve(omega @ b @ omega.T, omega @ b)
    np.testing.assert_allclose(approx, exact, atol=1e-8 * np.abs(b).max())
    np.testing.assert_allclose(omega @ approx, omega @ b, atol=1e-8 * np.abs(b).max())
    assert np.linalg.eigvalsh(b - approx).min() > -1e-10 * np.abs(b).max()
    diag = np.asarray(matrix_free.nystrom_diagonal(jnp.asarray(u), jnp.asarray(sigma)))
    np.testing.assert_allclose(diag, np.diagonal(approx), rtol=1e-10)
    assert np.all(diag <= np.diagonal(b) * (1 + 1e-10))


def test_one_compile_per_configuration():
    api = sys.modules["reds_jax.core.api"]
    before = api._traverse_jit._cache_size()
    for seed in range(3):
        z0 = jax.random.normal(jax.random.key(seed), (2, D))
        step = FixedStep(0.1 + seed)
        reds_jax.traverse(PROBLEM, z0, solver=MatrixFree(), steps=3, step=step)
    assert api._traverse_jit._cache_size() - before == 1


def test_float32_start_solve_on_near_singular_fixed_grams_matches_scipy():
    # The start latent's solve in float32, vmapped over 128 pencils whose fixed Gram is singular
    # (rank d - 4), normalised as traverse normalises, with the float32 ridge floor. Formed as
    # q·(B + λI)·q the projected B lost its ≈ λ eigenvalues to rounding: Ritz values far off
    # and |cos| 0.63 on 3 of these 128 (NaN blocks on the rooms oracle at N = 256). Through the
    # Cholesky factor it is a sum of squares.
    rng = np.random.default_rng(2)
    d, n = 16, 128
    jf = rng.standard_normal((n, 40, d - 4)) @ rng.standard_normal((n, d - 4, d))
    ja = rng.standard_normal((n, 30, d)) * np.geomspace(1.0, 1e-2, d)
    a, b = np.einsum("nmi,nmj->nij", ja, ja), np.einsum("nmi,nmj->nij", jf, jf)
    a /= np.linalg.norm(a, axis=(1, 2), keepdims=True)
    b /= np.linalg.norm(b, axis=(1, 2), keepdims=True)
    x0 = np.tile(np.eye(d)[:2], (n, 1, 1))
    a32, b32, x32 = (jnp.asarray(x, jnp.float32) for x in (a, b, x0))
    solve = jax.jit(jax.vmap(lambda a, b, x: matrix_free.start_solve(a, b, 0.0, x, 50, "both")))
    values, vectors, _, lam, _, _ = solve(a32, b32, x32)
    assert bool(jnp.all(jnp.isfinite(vectors)))
    for i in range(n):
        w, v = scipy.linalg.eigh(a[i], b[i] + float(lam[i]) * np.eye(d))
        top = v[:, -1] / np.linalg.norm(v[:, -1])
        # top values reach 3.5e4 (B nearly singular on the answer): float32 rounding moves
        # them by up to 1.5 % (measured); the bug this guards against was far off / NaN
        assert abs(float(values[i, 0]) - w[-1]) <= 3e-2 * w[-1]
        # 0.998 on one of 128 on some CPUs (float32 rounding differs by ISA); the bug: 0.63
        assert abs(np.dot(top, np.asarray(vectors[i, 0], np.float64))) >= 0.995


def test_cholesky_inverse_of_a_numerically_indefinite_matrix_stays_bounded():
    b = jnp.asarray([[1.0, 1.0], [1.0, 1.0 - 1e-3]], jnp.float32)  # indefinite by rounding
    inv = linalg.cholesky_inverse(b)
    eps = float(jnp.finfo(jnp.float32).eps)
    assert bool(jnp.all(jnp.isfinite(inv)))
    assert float(jnp.max(jnp.abs(inv))) <= 2.0 / np.sqrt(eps)  # not 1/sqrt(tiny) ≈ 1e19


def test_lobpcg_skips_a_non_finite_iteration_and_keeps_the_block():
    jac = jnp.diag(jnp.array([1.0, 2.0, 3.0]))

    def jv(u):  # a product that breaks down near the top direction e3
        return jnp.where(jnp.abs(u[2]) > 0.5, jnp.nan, 1.0) * (jac @ u)

    pencil = matrix_free.ProductPencil.build(
        jv, lambda w: jac.T @ w, (3,), 1, jnp.ones(1), jnp.asarray(1.0)
    )
    x0 = jnp.asarray([[1.0, 0.0, 0.4]])  # Rayleigh quotient (1 + 9·0.16) / 1.16
    res = lobpcg.lobpcg(pencil, x0, 3)
    theta, x = res.theta, res.x
    assert bool(jnp.all(jnp.isfinite(x))) and bool(jnp.all(jnp.isfinite(theta)))
    np.testing.assert_allclose(np.asarray(x[0]) / np.asarray(x[0, 0]), [1.0, 0.0, 0.4], atol=1e-12)
    np.testing.assert_allclose(theta[0], 2.44 / 1.16, rtol=1e-12)


def test_non_finite_products_keep_trajectories_finite():
    def gen(z):  # sqrt has an infinite derivative where z[0] + 1 crosses 0
        return GEN(z).at[0, 0, 0].set(jnp.sqrt(jnp.abs(z[0] + 1.0)))

    z0 = jnp.zeros(D).at[0].set(-1.0)
    problem = Problem(gen, vary=VARY, fix=[FIX])
    tr = reds_jax.traverse(problem, z0, solver=MatrixFree(), steps=3, step=FixedStep(0.3))
    assert bool(jnp.all(jnp.isfinite(tr.latents)))
    dirs = reds_jax.directions(problem, z0, solver=MatrixFree(cold_start="iterative"))
    assert bool(jnp.all(jnp.isfinite(dirs.vectors)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"iters": 0}, "iters must be"),
        ({"cold_start": "warm"}, "cold_start="),
        ({"precond": "always"}, "precond="),
        ({"mode": "fd"}, "mode='fd'"),
        ({"sketch": 0}, "sketch must be"),
        ({"turn_tol": -1.0}, r"turn_tol must be .*sine"),
    ],
)
def test_bad_solver_input_raises_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MatrixFree(**kwargs)


def test_matrix_free_refuses_methods_it_does_not_solve():
    nullspace = Problem(GEN, vary=VARY, fix=[FIX], method="nullspace")
    with pytest.raises(ValueError, match="supports method"):
        reds_jax.traverse(nullspace, jnp.zeros(D), solver=MatrixFree())


def test_sharded_matrix_free_matches_single_device():
    code = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np
        jax.config.update("jax_enable_x64", True)
        assert len(jax.devices()) == 8
        import reds_jax
        from reds_jax import features as F
        from bench_problems import conv_generator
        gen = conv_generator(12, size=8, channels=(6, 4), dtype=jnp.float64)
        z0 = jax.random.normal(jax.random.key(0), (11, 12))  # not a multiple of 8: padded
        problem = reds_jax.Problem(gen, vary=F.region((0.0, 0.0, 0.5, 1.0)),
                                   fix=[F.region((0.5, 0.0, 0.5, 1.0))])
        tr = reds_jax.traverse(problem, z0, steps=3, step=reds_jax.FixedStep(0.3),
                               solver=reds_jax.MatrixFree())
        np.save("OUT", np.asarray(tr.latents))
        """
    )
    outs = arrays_on_devices(code, (8, 1))
    assert outs[0].shape == (11, 2, 4, 12)
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-10)
