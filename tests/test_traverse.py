"""directions/traverse: closed forms on linear generators, a planted-factor generator, shapes,
retracing, bad input and numerical fallbacks."""

import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from helpers import arrays_on_devices

import reds_jax
from reds_jax import FixedStep, Problem
from reds_jax import features as F

D = 6
W = jnp.asarray(np.random.default_rng(0).standard_normal((4 * 4, D)))


def linear_gen(z):  # [6] -> [4, 4, 1]: G(z) = W z
    return (W @ z).reshape(4, 4, 1)


TOP, BOTTOM = F.region((0, 0, 1, 4)), F.region((1, 0, 3, 4))  # rows 0..3 and 4..15 of W


def normalized(a):
    return a / np.linalg.norm(a)


def test_reds_direction_is_the_closed_form_generalised_eigenvector():
    w = np.asarray(W)
    a = normalized(w[4:].T @ w[4:])
    b = normalized(w[:4].T @ w[:4])
    ridge = 1e-3
    vals, vecs = scipy.linalg.eigh(a, b + ridge * np.eye(D))
    ref = vecs[:, ::-1][:, :2].T
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    problem = Problem(linear_gen, vary=BOTTOM, fix=[TOP], k=2, ridge=ridge)
    dirs = reds_jax.directions(problem, jnp.zeros(D))
    np.testing.assert_allclose(
        np.abs(np.sum(np.asarray(dirs.vectors) * ref, axis=1)), 1.0, atol=1e-8
    )
    np.testing.assert_allclose(dirs.values, vals[::-1][:2], rtol=1e-8)


def test_nullspace_directions_are_orthogonal_to_the_fixed_rows():
    problem = Problem(linear_gen, BOTTOM, [TOP], method="nullspace", k=2, beta_fix=0.999999)
    dirs = reds_jax.directions(problem, jnp.zeros(D))
    np.testing.assert_allclose(np.asarray(dirs.vectors) @ np.asarray(W)[:4].T, 0.0, atol=1e-8)
    assert float(dirs.values[0]) > 0.01


def test_minf_maxc_random_baselines_on_the_linear_generator():
    w = np.asarray(W)
    minf = reds_jax.directions(Problem(linear_gen, BOTTOM, [TOP], method="minf", k=2), jnp.zeros(D))
    np.testing.assert_allclose(np.asarray(minf.vectors) @ w[:4].T, 0.0, atol=1e-8)
    maxc = reds_jax.directions(Problem(linear_gen, BOTTOM, method="maxc"), jnp.zeros(D))
    top = np.linalg.eigh(w[4:].T @ w[4:])[1][:, -1]
    assert abs(float(np.dot(np.asarray(maxc.vectors[0]), top))) == pytest.approx(1.0, abs=1e-8)
    rnd = reds_jax.directions(
        Problem(linear_gen, BOTTOM, method="random", k=3), jnp.zeros((3, D)), key=jax.random.key(1)
    )
    assert rnd.vectors.shape == (3, 3, D)
    np.testing.assert_allclose(np.linalg.norm(rnd.vectors, axis=-1), 1.0, atol=1e-12)
    assert not np.allclose(rnd.vectors[0], rnd.vectors[1])


def planted_generator(d=8, na=3, nb=4, size=8, seed=0):
    """Left half (part A) driven by ``na`` curved factors, right half by ``nb`` others."""
    rng = np.random.default_rng(seed)
    pa, qa = (jnp.asarray(rng.standard_normal((na, d)) / np.sqrt(d)) for _ in range(2))
    pb = jnp.asarray(rng.standard_normal((nb, d)) / np.sqrt(d))
    ba = jnp.asarray(rng.standard_normal((size * size // 2, na)))
    bb = jnp.asarray(rng.standard_normal((size * size // 2, nb)))

    def gen(z):
        fa = jnp.tanh(pa @ z + 1.5 * (qa @ z) ** 2)  # level sets of A are curved in z
        fb = jnp.tanh(pb @ z)
        a = jax.nn.sigmoid(ba @ fa).reshape(size, size // 2, 1)
        b = jax.nn.sigmoid(bb @ fb).reshape(size, size // 2, 1)
        return jnp.concatenate([a, b], axis=1)

    return gen


def test_planted_factors_local_reds_keeps_part_a_fixed():
    gen = planted_generator()
    part_a = F.region((0, 0, 8, 4))
    z0 = jax.random.normal(jax.random.key(3), (8, 8))
    drift = {}
    for name, method, path in [
        ("local", "reds", "local"),
        ("linear", "reds", "linear"),
        ("maxc", "maxc", "local"),
    ]:
        problem = Problem(gen, F.pixels(), [part_a], method=method)
        tr = reds_jax.traverse(problem, z0, path=path, steps=12, step=FixedStep(0.2))
        drift[name] = np.asarray(tr.fix_distances[0][..., -1])  # [N, 2]
        if name == "local":
            change = np.asarray(tr.vary_distances[0][..., -1])
    rel = drift["local"] / change
    assert np.median(change) > 1.0  # the image really changes (part B moves)
    assert np.median(rel) < 0.02 and rel.max() < 0.1
    assert np.median(drift["local"]) < 0.5 * np.median(drift["linear"])
    assert np.median(drift["local"]) < 0.05 * np.median(drift["maxc"])


@pytest.mark.parametrize("path", ["linear", "local"])
def test_shapes_start_point_and_step_length(path):
    z0 = jax.random.normal(jax.random.key(0), (3, D))
    problem = Problem(linear_gen, vary=BOTTOM, fix=[TOP], k=2)
    tr = reds_jax.traverse(problem, z0, path=path, steps=4, step=FixedStep(0.3))
    assert tr.latents.shape == (3, 4, 5, D)
    assert [x.shape for x in tr.vary_distances + tr.fix_distances] == [(3, 4, 5)] * 2
    assert tr.values.shape == (3, 2)
    np.testing.assert_allclose(tr.latents[:, :, 0], np.broadcast_to(z0[:, None], (3, 4, D)))
    steps = np.linalg.norm(np.diff(np.asarray(tr.latents), axis=2), axis=-1)
    np.testing.assert_allclose(steps, 0.3, rtol=1e-10)
    # Paths come in +/- pairs along the start directions.
    first = np.asarray(tr.latents[:, :, 1] - tr.latents[:, :, 0])
    np.testing.assert_allclose(first[:, 0], -first[:, 1], atol=1e-12)
    np.testing.assert_allclose(tr.vary_distances[0][:, :, 0], 0.0)
    single = reds_jax.traverse(problem, z0[1], path=path, steps=4, step=FixedStep(0.3))
    assert single.latents.shape == (4, 5, D)
    np.testing.assert_allclose(single.latents, tr.latents[1], atol=1e-10)


def test_linear_generator_local_path_equals_linear_path():
    z0 = jnp.linspace(-1, 1, D)
    problem = Problem(linear_gen, vary=BOTTOM, fix=[TOP], k=2)
    lin = reds_jax.traverse(problem, z0, path="linear", steps=5)
    loc = reds_jax.traverse(problem, z0, path="local", steps=5)
    np.testing.assert_allclose(loc.latents, lin.latents, atol=1e-9)


def test_one_compile_per_configuration():
    api = sys.modules["reds_jax.core.api"]
    gen = planted_generator()
    vary, fix = F.pixels(), [F.region((0, 0, 8, 4))]
    before = api._traverse_jit._cache_size()
    for seed in range(3):  # a new Problem object, equal to the last, and a new step size
        z0 = jax.random.normal(jax.random.key(seed), (2, 8))
        problem = Problem(gen, vary=vary, fix=fix)
        reds_jax.traverse(problem, z0, steps=3, step=FixedStep(0.1 + seed))
    assert api._traverse_jit._cache_size() - before == 1


def test_exact_fd_and_chunked_solvers_agree():
    gen = planted_generator()
    z = jax.random.normal(jax.random.key(5), (8,))
    problem = Problem(gen, vary=F.pixels(), fix=[F.region((0, 0, 8, 4))], k=2)
    exact = reds_jax.directions(problem, z)
    for opts in ({"mode": "fd", "eps": 1e-5}, {"chunk_size": 3}, {"mode": "rev"}):
        other = reds_jax.directions(problem, z, solver=reds_jax.Dense(**opts))
        cos = np.abs(np.sum(np.asarray(exact.vectors) * np.asarray(other.vectors), axis=-1))
        np.testing.assert_allclose(cos, 1.0, atol=1e-6)


def test_non_finite_jacobian_and_singular_fixed_gram_keep_trajectories_finite():
    def gen(z):  # sqrt has an infinite derivative where z[0] + 1 crosses 0
        img = linear_gen(z)
        return img.at[0, 0, 0].set(jnp.sqrt(jnp.abs(z[0] + 1.0)))

    const = lambda img: jnp.zeros(3)  # noqa: E731  (zero Gram: B is singular)
    z0 = jnp.zeros(D).at[0].set(-1.0)
    for method in ("reds", "nullspace", "maxc", "minf"):
        tr = reds_jax.traverse(Problem(gen, F.pixels(), [const], method=method, k=2), z0, steps=4)
        assert bool(jnp.all(jnp.isfinite(tr.latents))), method
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in tr.vary_distances + tr.fix_distances)
    tr = reds_jax.traverse(Problem(gen, F.pixels(), [const]), z0, steps=3)
    maxc = reds_jax.traverse(Problem(gen, F.pixels(), method="maxc"), z0, steps=3)
    np.testing.assert_allclose(tr.latents, maxc.latents, atol=1e-8)


@pytest.mark.parametrize(
    ("problem", "call", "match"),
    [
        ({}, {"z0": jnp.zeros((2, 2, D))}, "z0 must have shape"),
        ({}, {"z0": jnp.full(D, jnp.nan)}, "non-finite"),
        ({"k": D + 1}, {}, "k="),
        ({"k": 5, "vary": F.region((0, 0, 1, 1))}, {}, "k="),
        ({"k": 0}, {}, "k must be an int >= 1"),
        ({"method": "pca"}, {}, "method="),
        ({}, {"path": "curvy"}, "path="),
        ({}, {"steps": -1}, "steps"),
        ({}, {"step": 0.1}, "step must be a step controller"),
        ({}, {"solver": "dense"}, "solver must be a reds_jax.Solver"),
        ({"method": "random"}, {}, "PRNG key"),
        ({"method": "nullspace", "fix": ()}, {}, "needs fixed features"),
        ({"weights": [1.0, 2.0]}, {}, "weights needs 1"),
        ({"beta_fix": 1.5}, {}, "beta_fix"),
        ({"vary": "pixels"}, {}, "vary must be"),
        ({"vary": ()}, {}, "at least one"),
        ({"local_span": "all"}, {}, "local_span="),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(problem, call, match):
    args = {"generator": linear_gen, "vary": BOTTOM, "fix": [TOP], **problem}
    call = dict(dict(z0=jnp.zeros(D)), **call)
    with pytest.raises(ValueError, match=match):
        reds_jax.traverse(Problem(**args), **call)


def test_bad_objects_raise_value_errors_naming_the_field():
    with pytest.raises(ValueError, match="FixedStep\\(size\\) must be"):
        FixedStep(0.0)
    with pytest.raises(ValueError, match="mode="):
        reds_jax.Dense(mode="sideways")
    with pytest.raises(ValueError, match="problem must be a reds_jax.Problem"):
        reds_jax.traverse(linear_gen, jnp.zeros(D))


def test_generator_that_does_not_return_an_image_is_rejected():
    with pytest.raises(ValueError, match=r"image \[H, W, C\]"):
        reds_jax.directions(Problem(lambda z: W @ z, vary=lambda x: x), jnp.zeros(D))
    with pytest.raises(ValueError, match="generator could not be applied"):
        reds_jax.directions(Problem(linear_gen, vary=F.pixels()), jnp.zeros(D + 1))


def test_sharded_batch_matches_single_device():
    code = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np
        jax.config.update("jax_enable_x64", True)
        assert len(jax.devices()) == 8
        import reds_jax
        from reds_jax import features as F
        w = jnp.asarray(np.random.default_rng(0).standard_normal((16, 6)))
        gen = lambda z: jnp.tanh(w @ z).reshape(4, 4, 1)
        z0 = jax.random.normal(jax.random.key(0), (11, 6))  # not a multiple of 8: padded
        problem = reds_jax.Problem(gen, F.region((1, 0, 3, 4)), [F.region((0, 0, 1, 4))], k=2)
        tr = reds_jax.traverse(problem, z0, steps=3)
        one = reds_jax.Problem(gen, F.region((1, 0, 3, 4)), [F.region((0, 0, 1, 4))])
        pc = reds_jax.traverse(one, z0, steps=2, step=reds_jax.FeatureStep(0.05),
                               corrector=reds_jax.Corrector(1))  # path control
        np.save("OUT", np.concatenate([np.ravel(tr.latents), np.ravel(pc.latents)]))
        """
    )
    outs = arrays_on_devices(code, (8, 1))
    assert outs[0].shape == (11 * 4 * 4 * 6 + 11 * 2 * 3 * 6,)
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-10)


def test_public_functions_run_inside_user_jit_and_vmap():
    z0 = jax.random.normal(jax.random.key(2), (2, D))
    problem = Problem(linear_gen, vary=BOTTOM, fix=[TOP])
    kw = dict(steps=3, step=FixedStep(0.2))
    eager = reds_jax.traverse(problem, z0, **kw).latents
    jitted = jax.jit(lambda z: reds_jax.traverse(problem, z, **kw).latents)(z0)
    np.testing.assert_allclose(jitted, eager, atol=1e-10)
    two = Problem(linear_gen, vary=BOTTOM, fix=[TOP], k=2)
    per = jax.vmap(lambda z: reds_jax.directions(two, z).vectors)
    np.testing.assert_allclose(per(z0), reds_jax.directions(two, z0).vectors, atol=1e-10)
