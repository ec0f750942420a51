"""Path control (issue 19): feature-space steps and the Gauss–Newton drift corrector.

Known answers:
* a circle generator ``[a₁² + a₂², a₂]`` whose fixed feature (the radius²) has a known level set:
  the uncorrected local REDs path steps along tangents, so ``r_t² = r₀² + t·ε²`` exactly; the
  corrected path stays on ``r² = r₀²``;
* a linear generator: feature-space steps change the varied feature by exactly ``δ`` per step,
  with step length ``δ / ‖J_vary v‖``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reds_jax
from reds_jax import Corrector, FeatureStep, FixedStep, Problem
from reds_jax import features as F
from reds_jax.core.control import GaussNewton, step_length

RADIUS = F.region((0, 0, 1, 1), units="pixels")  # pixel 0: a₁² + a₂²
HEIGHT = F.region((0, 1, 1, 1), units="pixels")  # pixel 1: a₂


def circle(z):
    return jnp.stack([z[0] ** 2 + z[1] ** 2, z[1]]).reshape(1, 2, 1)


Z0 = jnp.asarray([1.0, 0.0])
EPS, T = 0.1, 6


def test_uncorrected_local_path_leaves_the_level_set_as_the_closed_form_says():
    tr = reds_jax.traverse(Problem(circle, HEIGHT, [RADIUS]), Z0, steps=T, step=FixedStep(EPS))
    r2 = np.sum(np.asarray(tr.latents) ** 2, axis=-1)  # [2, T+1]
    expected = 1.0 + EPS**2 * np.arange(T + 1)
    np.testing.assert_allclose(r2, np.broadcast_to(expected, r2.shape), rtol=1e-5)
    np.testing.assert_allclose(tr.step_lengths, EPS)


@pytest.mark.parametrize("solver", [reds_jax.Dense(), reds_jax.MatrixFree()])
def test_corrected_path_stays_on_the_level_set_and_keeps_moving(solver):
    tr = reds_jax.traverse(
        Problem(circle, HEIGHT, [RADIUS]), Z0, steps=T, step=FixedStep(EPS),
        corrector=Corrector(2), solver=solver,
    )  # fmt: skip
    z = np.asarray(tr.latents)
    np.testing.assert_allclose(np.sum(z**2, axis=-1), 1.0, atol=1e-9)
    # it still travels: the height a₂ grows (shrinks on the minus path) at about ε per step
    a2 = z[..., 1]
    assert np.all(np.diff(a2[0]) > 0.05) and np.all(np.diff(a2[1]) < -0.05)
    # the fixed distance is ~0 where the uncorrected path drifts by t·ε²
    assert float(np.max(np.asarray(tr.fix_distances[0]))) < 1e-9
    assert int(np.sum(tr.diagnostics.rejected_corrections)) == 0


def test_corrector_moves_orthogonally_to_the_direction():
    corr = Corrector(iters=3, cg_iters=4).at(Problem(circle, HEIGHT, [RADIUS]), Z0)
    v = jnp.asarray([0.0, 1.0])
    z = Z0 + 0.3 * v  # off the circle: r² = 1.09
    z_new, _, rejected = corr(z, v, jnp.zeros(2))
    np.testing.assert_allclose(float(jnp.sum(z_new**2)), 1.0, atol=1e-10)
    np.testing.assert_allclose(float(z_new[1]), 0.3, atol=1e-12)  # no move along v
    assert int(rejected) == 0


def test_corrector_rejects_a_step_that_cannot_help():
    # the fixed feature cannot be held: it is the varied direction itself (δ ⊥ v leaves nothing)
    g = lambda z: jnp.stack([z[0], z[1]]).reshape(1, 2, 1)  # noqa: E731
    corr = GaussNewton.at(g, (RADIUS,), (1.0,), True, jnp.zeros(2), iters=2, cg_iters=4)
    z = jnp.asarray([0.5, 0.0])
    z_new, _, rejected = corr(z, jnp.asarray([1.0, 0.0]), jnp.zeros(2))
    np.testing.assert_array_equal(np.asarray(z_new), np.asarray(z))
    assert int(rejected) == 2


def test_trust_region_keeps_a_gauss_newton_step_where_the_linearisation_holds():
    # fixed feature sin(z₁), held at sin(0) = 0, corrected ⊥ v = e₀ from z₁ = 1.2: the full
    # Gauss–Newton step −tan(1.2) = −2.57 overshoots to sin(−1.37) = −0.98 (|r| up from 0.93:
    # rejected); inside a ball of radius 0.5 it stops on the boundary at z₁ = 0.7 (accepted).
    g = lambda z: jnp.stack([jnp.sin(z[1]), z[0]]).reshape(1, 2, 1)  # noqa: E731
    corr = GaussNewton.at(g, (RADIUS,), (1.0,), True, jnp.zeros(2), iters=1, cg_iters=4)
    z, v = jnp.asarray([0.3, 1.2]), jnp.asarray([1.0, 0.0])
    z_free, _, rejected_free = corr(z, v, jnp.zeros(2))
    np.testing.assert_array_equal(np.asarray(z_free), np.asarray(z))
    assert int(rejected_free) == 1
    z_tr, x, rejected_tr = corr(z, v, jnp.zeros(2), 0.5)
    np.testing.assert_allclose(np.asarray(z_tr), [0.3, 0.7], atol=1e-12)
    np.testing.assert_allclose(np.asarray(x), [0.0, -0.5], atol=1e-12)
    assert int(rejected_tr) == 0


def test_truncated_cg_is_lstsq_in_a_large_ball_and_the_steepest_descent_point_in_a_tiny_one():
    from reds_jax.core.control import _projected_cg

    rng = np.random.default_rng(5)
    J = jnp.asarray(rng.standard_normal((6, 4)) * np.array([3.0, 1.0, 0.3, 0.1]))
    r = jnp.asarray(rng.standard_normal(6))
    v = jnp.asarray([1.0, 0.0, 0.0, 0.0])
    proj = lambda u: u - v * jnp.dot(v, u)  # noqa: E731
    jvp = lambda u: J @ u  # noqa: E731
    vjp = lambda y: (J.T @ y,)  # noqa: E731
    # ball large enough: CG's exact answer (3 free coordinates, 3+ iterations) = least squares
    free = np.linalg.lstsq(np.asarray(J)[:, 1:], -np.asarray(r), rcond=None)[0]
    big = _projected_cg(jvp, vjp, r, proj, jnp.zeros(4), 6, 1e3)
    np.testing.assert_allclose(np.asarray(big), np.r_[0.0, free], atol=1e-9)
    # tiny ball: the first iterate already leaves it, so δ = radius · (−P Jᵀr) / ‖P Jᵀr‖
    grad = np.asarray(proj(J.T @ r))
    tiny = _projected_cg(jvp, vjp, r, proj, jnp.zeros(4), 6, 1e-3)
    np.testing.assert_allclose(np.asarray(tiny), -1e-3 * grad / np.linalg.norm(grad), atol=1e-12)
    # in between: on the boundary, and reducing the linearised residual below the tiny step's
    mid = _projected_cg(jvp, vjp, r, proj, jnp.zeros(4), 6, 0.5 * float(np.linalg.norm(free)))
    np.testing.assert_allclose(float(jnp.linalg.norm(mid)), 0.5 * np.linalg.norm(free), rtol=1e-9)
    lin = lambda d: float(jnp.sum((r + J @ d) ** 2))  # noqa: E731
    assert lin(big) < lin(mid) < lin(tiny) < lin(jnp.zeros(4))


W = jnp.asarray(np.random.default_rng(3).standard_normal((4, 3)))
TOP = F.region((0, 0, 1, 2), units="pixels")
BOTTOM = F.region((1, 0, 1, 2), units="pixels")


def linear(z):
    return (W @ z).reshape(2, 2, 1)


@pytest.mark.parametrize("path", ["linear", "local"])
def test_feature_space_steps_change_the_varied_feature_by_the_target(path):
    z0 = jax.random.normal(jax.random.key(1), (3, 3))
    delta = 0.05
    step = FeatureStep(delta, max_size=1.0)
    tr = reds_jax.traverse(Problem(linear, BOTTOM, [TOP]), z0, steps=5, step=step, path=path)
    steps = np.diff(np.asarray(tr.vary_distances[0]), axis=-1)  # [N, 2, T]
    np.testing.assert_allclose(steps, delta, rtol=1e-9)
    v = np.asarray(tr.latents[:, :, 1] - tr.latents[:, :, 0])
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    rate = np.linalg.norm(np.einsum("md,npd->npm", np.asarray(W)[2:], v), axis=-1)  # ‖J_vary v‖
    np.testing.assert_allclose(tr.step_lengths, np.repeat((delta / rate)[..., None], 5, -1))


def test_feature_space_steps_are_clipped_to_the_step_range():
    problem, kw = Problem(linear, BOTTOM, [TOP]), dict(steps=3, path="linear")
    big = reds_jax.traverse(problem, jnp.ones(3), step=FeatureStep(10.0, max_size=1e-3), **kw)
    np.testing.assert_allclose(big.step_lengths, 1e-3)
    step = FeatureStep(1e-9, max_size=1.0, min_size=1e-4)
    small = reds_jax.traverse(problem, jnp.ones(3), step=step, **kw)
    np.testing.assert_allclose(small.step_lengths, 1e-4)
    for rate in (jnp.asarray([jnp.nan, 0.0]), jnp.zeros(2)):  # no finite root: the cap
        assert float(step_length(jnp.ones(2), rate, 1.0, 0.1, 0.5)) == 0.5


# The varied feature is a point on the unit circle at angle a₁ (pixels 0, 1); the fixed one is a₂.
# Along the REDs direction e₁ the feature's distance from the start is the chord 2·sin(θ/2), which
# per-step changes of δ (arc length) do not reach: the step rule catches up with t·δ.
ARC = F.region((0, 0, 1, 2), units="pixels")
LEVEL = F.region((1, 0, 1, 1), units="pixels")


def on_circle(z):
    return jnp.stack([jnp.cos(z[0]), jnp.sin(z[0]), z[1], z[1]]).reshape(2, 2, 1)


def test_feature_space_steps_keep_the_distance_from_the_start_on_schedule():
    delta, steps = 0.2, 8
    step = FeatureStep(delta, max_size=10.0)
    tr = reds_jax.traverse(Problem(on_circle, ARC, [LEVEL]), jnp.zeros(2), steps=steps, step=step)
    theta = np.abs(np.asarray(tr.latents)[0, :, 0])  # the + path; a₂ stays 0
    np.testing.assert_allclose(np.asarray(tr.latents)[..., 1], 0.0, atol=1e-12)
    # closed form: ε_t solves ε² + 2ε·sin θ + 4 sin²(θ/2) = goal², goal = max(‖e‖ + δ, (t+1)δ)
    chord = 2.0 * np.sin(theta[:-1] / 2.0)
    goal = np.maximum(chord + delta, delta * np.arange(1, steps + 1))
    s = np.sin(theta[:-1])
    eps = -s + np.sqrt(s**2 + goal**2 - chord**2)
    np.testing.assert_allclose(np.diff(theta), eps, rtol=1e-10)
    np.testing.assert_allclose(tr.step_lengths[0], eps, rtol=1e-10)
    assert abs(float(tr.step_lengths[0, 0]) - delta) < 1e-12  # the first step: δ / ‖J v‖
    dist = np.asarray(tr.vary_distances[0])[0]  # on schedule to second order: t·δ minus a lag
    np.testing.assert_allclose(dist, delta * np.arange(steps + 1), rtol=0.02, atol=1e-12)
    assert dist[-1] > 2.0 * np.sin(steps * delta / 2.0) + 0.05  # equal arc steps fall behind


def test_control_composes_with_batches_and_matches_one_latent_at_a_time():
    z0 = jax.random.normal(jax.random.key(4), (3, 3))
    kw = dict(steps=3, step=FeatureStep(0.1, max_size=0.3), corrector=Corrector(1))
    g = Problem(lambda z: jnp.tanh(linear(z)), BOTTOM, [TOP])
    batch = reds_jax.traverse(g, z0, **kw)
    for i in range(3):
        one = reds_jax.traverse(g, z0[i], **kw)
        np.testing.assert_allclose(batch.latents[i], one.latents, atol=1e-12)
        np.testing.assert_allclose(batch.step_lengths[i], one.step_lengths, atol=1e-12)
    mf = reds_jax.traverse(g, z0, solver=reds_jax.MatrixFree(iters=4), **kw)
    np.testing.assert_allclose(mf.latents, batch.latents, atol=1e-6)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: FeatureStep(-1.0), r"FeatureStep\(target\)"),
        (lambda: FeatureStep(0.0), r"FeatureStep\(target\)"),
        (lambda: FeatureStep(float("nan")), r"FeatureStep\(target\)"),
        (lambda: FeatureStep("0.1"), r"FeatureStep\(target\)"),
        (lambda: FeatureStep(0.1, max_size=1.0, min_size=2.0), "min_size"),
        (lambda: FixedStep(-0.1), r"FixedStep\(size\)"),
        (lambda: Corrector(-1), r"Corrector\(iters\)"),
        (lambda: Corrector(1.5), r"Corrector\(iters\)"),
        (lambda: Corrector(True), r"Corrector\(iters\)"),
        (lambda: Corrector(1, cg_iters=0), "cg_iters"),
    ],
)
def test_bad_control_values_are_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_corrector_needs_fixed_features():
    with pytest.raises(ValueError, match="fix="):
        reds_jax.traverse(
            Problem(linear, BOTTOM, method="maxc"), jnp.ones(3), corrector=Corrector(1)
        )


def test_job_config_and_cli_flags_carry_path_control_to_the_traversal(capsys):
    from reds_jax.jobs import cli, models
    from reds_jax.jobs.config import ConfigError, JobConfig
    from reds_jax.jobs.experiment import get_experiment

    w = np.random.default_rng(5).standard_normal((4 * 4 * 3, 4)) / 2.0

    def toy():
        return None, lambda z: 0.5 * (jnp.tanh(jnp.asarray(w, z.dtype) @ z).reshape(4, 4, 3) + 1), 4

    models.register_model(
        "toy_pc", toy, description="toy", vary=("lowpass:1",), fix=("highpass:1",), step_size=0.3
    )
    try:
        cfg = JobConfig(
            model="toy_pc", seeds="0:2", k=1, steps=2, step_target=0.2, correct=1, dtype="float64"
        ).resolved()
        exp = get_experiment(cfg)
        got = exp.run(seeds=[0, 1])
        z0 = exp.start_latents([0, 1])
        ref = [
            reds_jax.traverse(
                Problem(exp.model.generator, exp.vary, exp.fix), z0[i], steps=2,
                step=FeatureStep(0.2, max_size=0.3), corrector=Corrector(1),
                key=jax.random.fold_in(jax.random.fold_in(jax.random.key(0), i), 1),
            )
            for i in range(2)
        ]  # fmt: skip
        np.testing.assert_allclose(got["latents"], np.stack([r.latents for r in ref]), atol=1e-9)
        assert (
            "step_target" in cfg.identity()
            and "correct" not in JobConfig(model="toy_pc", seeds="0:2").identity()
        )  # path control off: the identity of older jobs
        with pytest.raises(ConfigError, match="step_target"):
            JobConfig(model="toy_pc", seeds="0:2", step_target=-1.0).resolved()
        with pytest.raises(ConfigError, match="correct"):
            JobConfig(model="toy_pc", seeds="0:2", correct=-2).resolved()
        ns = cli._parser().parse_args(
            ["traverse", "--model", "toy_pc", "--seeds", "0", "--step-target", "0.1",
             "--correct", "2"]
        )  # fmt: skip
        job = cli._job_config(ns, augment=False)
        job = job[0] if isinstance(job, tuple) else job
        assert (job.step_target, job.correct) == (0.1, 2)
    finally:
        models.MODELS.pop("toy_pc", None)
