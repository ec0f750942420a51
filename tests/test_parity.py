"""Paper parity: ``Problem.official`` with ``Dense(mode="fd_official")`` and the reference code's rules, against a numpy oracle.

The oracle below is written from reading the reference code (github.com/balakg/rayleigh-eigendirections,
``main.py``/``utils.py`` at commit 0f52564): finite-difference Jacobians (step = traversal step,
central at the start latent, forward later), Grams ``JᵀJ/‖JᵀJ‖_F``, ``numpy.linalg.eig`` sorted by
value, the explained-variance rank ``min(n, #{cumsum(e²/Σe²) <= beta} + 1)``, the null space as
the complement of the QR-orthonormalised stacked kept bases, and local paths that project the
previous direction onto the whole per-step span (QR), renormalise and keep the sign that agrees.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from reds_jax import Dense, FixedStep, Problem, directions, traverse
from reds_jax.core import jacobians, presets, rayleigh

OFFICIAL = Dense(mode="fd_official")  # the reference's finite differences (step = step size)

# ---------------------------------------------------------------------------------------------
# The numpy oracle (the reference's rules, float64)


def _fd(fn, z, step, central):
    """``[m, d]`` finite-difference Jacobian of ``fn: [d] -> [m]``."""
    d = z.size
    plus = np.stack([fn(z + step * e) for e in np.eye(d)])
    if central:
        minus = np.stack([fn(z - step * e) for e in np.eye(d)])
        jac = ((plus - minus) / (2 * step)).T
    else:
        jac = ((plus - fn(z)[None]) / step).T
    jac[~np.isfinite(jac)] = 0.0
    return jac


def _gram(jac):
    a = jac.T @ jac
    return a / np.linalg.norm(a)


def _rank(e, beta):
    share = e**2 / np.sum(e**2)
    return min(e.size, int(np.sum(np.cumsum(share) <= beta)) + 1)


def _kept(a, beta):
    """Leading eigenvectors (columns) explaining ``beta`` of the squared spectrum."""
    e, v = np.linalg.eig(a)
    order = np.argsort(np.real(e))[::-1]
    e, v = np.real(e[order]), np.real(v[:, order])
    return v[:, : _rank(e, beta)]


def _null(grams, betas):
    """Columns spanning the complement of the union of the kept spaces."""
    q, _ = np.linalg.qr(
        np.concatenate([_kept(a, b) for a, b in zip(grams, betas, strict=True)], axis=1)
    )
    u, s, _ = np.linalg.svd(np.eye(q.shape[0]) - q @ q.T)
    return u[:, s > 1e-3]


def _oracle_dirs(method, jacs, n_fix, beta_f, beta_c):
    grams = [_gram(j) for j in jacs]
    fixed, varied = grams[:n_fix], grams[n_fix]
    if method == "maxc":
        return _kept(varied, beta_c)
    null = _null(fixed, [beta_f] * n_fix)
    if method == "minf":
        return null
    return null @ _kept(null.T @ varied @ null, beta_c)  # the reference's "reds" (nullspace)


def _ref_step(v, span):
    """The reference's local step: project ``v`` onto ``span``'s columns (QR), renormalise, and keep
    the sign that agrees with ``v``."""
    q, _ = np.linalg.qr(span)
    y = q @ (q.T @ v)
    y = y / np.linalg.norm(y)
    return y if np.dot(y, v) > 0 else -y


def _fix_sign(v):
    return v if v[np.argmax(np.abs(v))] > 0 else -v


def _oracle_paths(features, z0, method, n_eig, n_step, step, *, n_fix, beta_f, beta_c, v0=None):
    """``(latents [2n, T+1, d], spans [2n, T-1])`` of the reference's local paths.

    ``features(z) -> list of [m_i]`` (fixed ones first, then the varied one). The start
    directions' signs are arbitrary in the reference (LAPACK): they are fixed as reds_jax does
    (largest entry positive). ``v0`` ``[n, d]`` overrides the start directions (``minf``, whose
    basis of the null space is arbitrary in the reference).
    """
    sizes = np.cumsum([f.size for f in features(z0)])[:-1]

    def jacs_at(z, central):
        return np.split(_fd(lambda x: np.concatenate(features(x)), z, step, central), sizes)

    start = _oracle_dirs(method, jacs_at(z0, True), n_fix, beta_f, beta_c)
    n = min(n_eig, start.shape[1])
    starts = [_fix_sign(start[:, i]) for i in range(n)] if v0 is None else list(v0)
    paths, spans = [], []
    for t in range(2 * n):
        v = starts[t // 2] * (1.0 if t % 2 == 0 else -1.0)
        zs, rs = [z0], []
        for j in range(n_step):
            if j > 0:
                span = _oracle_dirs(method, jacs_at(zs[-1], False), n_fix, beta_f, beta_c)
                v = _ref_step(v, span)
                rs.append(span.shape[1])
            zs.append(zs[-1] + step * v)
        paths.append(np.stack(zs))
        spans.append(rs)
    return np.stack(paths), np.asarray(spans)


# ---------------------------------------------------------------------------------------------
# A small nonlinear generator (numpy and JAX twins), d = 6; features: vary 3, fix 2 + 1

_RNG = np.random.default_rng(3)
_W1 = _RNG.normal(size=(8, 6)) / np.sqrt(6)
_B1 = _RNG.normal(size=8) * 0.3
_W2 = _RNG.normal(size=(6, 8)) / np.sqrt(8)


def _np_outputs(z):
    return np.tanh(_W2 @ np.tanh(_W1 @ z + _B1))


def _np_features(z):  # fixed (2), fixed (1), varied (3)
    out = _np_outputs(z)
    return [out[3:5], out[5:6], out[:3]]


def _gen(z):
    h = jnp.tanh(jnp.asarray(_W1) @ z + jnp.asarray(_B1))
    return jnp.reshape(jnp.tanh(jnp.asarray(_W2) @ h), (1, 6, 1))


_VARY = lambda im: im[0, :3, 0]  # noqa: E731
_FIX = (lambda im: im[0, 3:5, 0], lambda im: im[0, 5:6, 0])
_Z0 = np.array([0.3, -0.5, 0.8, 0.1, -0.2, 0.6])


@pytest.mark.parametrize("method", ["nullspace", "maxc", "minf"])
def test_official_local_paths_follow_the_reference_rules(method):
    step, steps, k = 0.2, 5, 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # k may be cut to the span rank
        problem = Problem.official(_gen, _VARY, _FIX, method=method, k=k)
        tr = traverse(problem, jnp.asarray(_Z0), solver=OFFICIAL, steps=steps, step=FixedStep(step))
    got = np.asarray(tr.latents)
    v0 = None
    if method == "minf":  # the reference's basis of the null space is arbitrary: start from ours
        v0 = (got[0::2, 1] - _Z0) / step
        jacs = np.split(_fd(lambda x: np.concatenate(_np_features(x)), _Z0, step, True), [2, 3])
        null = _oracle_dirs("minf", jacs, 2, 0.99, 0.999)
        proj = null @ null.T
        np.testing.assert_allclose(proj @ v0.T, v0.T, atol=1e-9)  # our starts lie in its span
    want, spans = _oracle_paths(
        _np_features, _Z0, method, k, steps, step, n_fix=2, beta_f=0.99, beta_c=0.999, v0=v0
    )
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-8)
    if method != "minf":
        assert spans.min() >= 1 and spans.max() < _Z0.size  # a real cut, not all of R^d


# ---------------------------------------------------------------------------------------------
# maxc: the beta span changes rank mid-path


def _switch_gen(z):
    """``f(z) = (z0 + z1²/2, 0.05·z1 + z0·z1/2 + z0²)``: the second singular value grows."""
    f = jnp.stack([z[0] + 0.5 * z[1] ** 2, 0.05 * z[1] + 0.5 * z[0] * z[1] + z[0] ** 2])
    return jnp.reshape(f, (1, 2, 1))


def _switch_jac(z):
    return np.array([[1.0, z[1]], [0.5 * z[1] + 2 * z[0], 0.05 + 0.5 * z[0]]])


def _switch_oracle(z0, step, steps, beta):
    """The reference's maxc local rule with the exact Jacobian; also the rank at each step."""
    v = _fix_sign(_kept(_gram(_switch_jac(z0)), beta)[:, 0])
    zs, ranks = [z0], []
    for j in range(steps):
        if j > 0:
            span = _kept(_gram(_switch_jac(zs[-1])), beta)
            ranks.append(span.shape[1])
            v = _ref_step(v, span)
        zs.append(zs[-1] + step * v)
    return np.stack(zs), ranks


def test_maxc_beta_span_switches_rank_mid_path():
    z0, step, steps, beta = np.array([0.1, -0.3]), 0.1, 8, 0.99
    want, ranks = _switch_oracle(z0, step, steps, beta)
    assert ranks[0] == 1 and ranks[-1] == 2  # the span switches from the top-1 to all of R^2
    switch = ranks.index(2) + 1  # first latent index whose step uses the rank-2 span
    # With the whole plane as span the direction no longer turns: equal increments afterwards.
    inc = np.diff(want[switch - 1 :], axis=0)
    np.testing.assert_allclose(inc, np.broadcast_to(inc[0], inc.shape), atol=1e-12)
    vary, common = lambda im: im[0, :, 0], dict(steps=steps, step=FixedStep(step))
    cut = Problem(_switch_gen, vary, method="maxc", beta_vary=beta)
    got = traverse(cut, jnp.asarray(z0), **common).latents
    np.testing.assert_allclose(np.asarray(got[0]), want, atol=1e-10)
    # The top-k rule (reds_jax's default without beta_vary) keeps turning: a different path.
    top1 = traverse(Problem(_switch_gen, vary, method="maxc"), jnp.asarray(z0), **common).latents
    assert float(jnp.max(jnp.abs(top1[0] - got[0]))) > 0.05


# ---------------------------------------------------------------------------------------------
# minf: union complement (reference) vs weighted sum (reds_jax default)


def _planted(rng, d, spectrum):
    u, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return u, (u * np.asarray(spectrum)) @ u.T


def test_minf_union_complement_vs_weighted_sum():
    rng = np.random.default_rng(0)
    d = 6
    # beta_fix = 0.99 keeps two eigenvectors of A1 and one of A2 (squared shares: planted).
    u1, a1 = _planted(rng, d, [1.0, 0.6, 0.05, 0.02, 0.01, 0.0])
    u2, a2 = _planted(rng, d, [1.0, 0.08, 0.03, 0.0, 0.0, 0.0])
    a_fix = jnp.asarray(np.stack([a1, a2]))
    beta = jnp.full(2, 0.99)
    assert _rank(np.array([1.0, 0.6, 0.05, 0.02, 0.01, 0.0]), 0.99) == 2
    assert _rank(np.array([1.0, 0.08, 0.03, 0.0, 0.0, 0.0]), 0.99) == 1
    null_want = scipy.linalg.null_space(np.concatenate([u1[:, :2], u2[:, :1]], axis=1).T)
    assert null_want.shape == (d, 3)
    union = jax.jit(lambda a, b: rayleigh.minf_union_system(a, jnp.ones(2), beta_fix=b))
    _, vectors, span = union(a_fix, beta)
    assert np.asarray(span).tolist() == [1.0] * 3 + [0.0] * 3
    rows = np.asarray(vectors[:3])
    np.testing.assert_allclose(rows.T @ rows @ null_want, null_want, atol=1e-10)
    # Inside the null space the rows are ordered by the summed Gram, smallest first.
    inside = null_want.T @ (a1 + a2) @ null_want
    evals, evecs = scipy.linalg.eigh(inside)
    np.testing.assert_allclose(np.abs(rows @ (null_want @ evecs)), np.eye(3), atol=1e-8)
    # The default ("sum") is the bottom eigenspace of A1 + A2: a different 3-d space here.
    _, sum_vecs = jax.jit(lambda a: rayleigh.minf_system(a, jnp.ones(2)))(a_fix)
    _, sum_want = scipy.linalg.eigh(a1 + a2)
    np.testing.assert_allclose(
        np.abs(np.asarray(sum_vecs[:3]) @ sum_want[:, :3]), np.eye(3), atol=1e-8
    )
    bottom = sum_want[:, :3]
    gap = np.linalg.norm(bottom @ bottom.T - null_want @ null_want.T)
    assert gap > 0.1


def test_minf_union_through_directions():
    """A linear generator whose fixed Grams are planted: ``minf_mode="union"`` end to end."""
    rng = np.random.default_rng(1)
    d = 5
    u1, a1 = _planted(rng, d, [1.0, 0.7, 0.0, 0.0, 0.0])
    u2, a2 = _planted(rng, d, [1.0, 0.0, 0.0, 0.0, 0.0])
    m = np.concatenate([np.sqrt([1.0, 0.7])[:, None] * u1[:, :2].T, u2[:, :1].T])  # [3, d]
    gen = lambda z: jnp.reshape(jnp.asarray(m) @ z, (1, 3, 1))  # noqa: E731
    fix = (lambda im: im[0, :2, 0], lambda im: im[0, 2:, 0])
    null_want = scipy.linalg.null_space(m)
    dirs = directions(
        Problem(gen, lambda im: im, fix, method="minf", minf_mode="union", k=2), jnp.zeros(d)
    )
    v = np.asarray(dirs.vectors)
    np.testing.assert_allclose(null_want @ (null_want.T @ v.T), v.T, atol=1e-10)
    with pytest.warns(UserWarning, match="k=3 cut to 2"):
        official = Problem.official(gen, lambda im: im, fix, method="minf", k=3)
        capped = directions(official, jnp.zeros(d), solver=Dense(mode="fd_official", eps=1e-3))
    assert capped.vectors.shape == (2, d)


# ---------------------------------------------------------------------------------------------
# Finite differences: the reference's scheme


def test_fd_central_and_forward_by_hand():
    fn = lambda z: jnp.stack([z[0] ** 3, z[0] * z[1]])  # noqa: E731
    z = jnp.array([1.0, 2.0])
    h = 0.1
    both = jax.jit(
        lambda z: [jacobians.jacobian(fn, z, mode=m, eps=h) for m in ("fd", "fd_forward")]
    )
    central, forward = both(z)
    # d(z0³)/dz0: central (1.1³ − 0.9³)/0.2 = 3 + h² = 3.01; forward (1.1³ − 1)/0.1 = 3.31.
    np.testing.assert_allclose(np.asarray(central), [[3.01, 0.0], [2.0, 1.0]], atol=1e-12)
    np.testing.assert_allclose(np.asarray(forward), [[3.31, 0.0], [2.0, 1.0]], atol=1e-12)
    assert jacobians.point_mode("fd_official", 1e-3, 0.25, at_start=True) == ("fd", 0.25)
    assert jacobians.point_mode("fd_official", 1e-3, 0.25, at_start=False) == ("fd_forward", 0.25)
    assert jacobians.point_mode("fd_official", 1e-3, None, at_start=True) == ("fd", 1e-3)
    assert jacobians.point_mode("fwd", 1e-3, 0.25, at_start=False) == ("fwd", 1e-3)
    with pytest.raises(ValueError, match="point_mode"):
        jacobians.jacobian(fn, z, mode="fd_official")


def test_fd_official_gram_at_start_and_later():
    """The traversal's Grams: central with the step size at z0, forward later (1-d, by hand)."""
    gen = lambda z: jnp.reshape(z**3, (1, 1, 1))  # noqa: E731
    feats = [lambda im: jnp.ravel(im)]
    h = 0.5
    grams = jax.jit(
        lambda z: [
            jacobians.feature_grams(gen, feats, z, mode=m, eps=h) for m in ("fd", "fd_forward")
        ]
    )
    start, later = grams(jnp.array([1.0]))
    assert float(start[0, 0, 0]) == pytest.approx((3.0 + h**2) ** 2, abs=1e-12)  # 3.25²
    assert float(later[0, 0, 0]) == pytest.approx((3.0 + 3 * h + h**2) ** 2, abs=1e-12)  # 4.75²


# ---------------------------------------------------------------------------------------------
# Preset resolution, random distribution, Gram noise


def test_preset_resolution_and_overrides():
    method, opts = presets.resolve("official", None, {})
    assert method == "nullspace"
    assert (opts["beta_fix"], opts["beta_vary"], opts["mode"]) == (0.99, 0.999, "fd_official")
    assert "gram_noise" not in opts  # off even in the preset
    method, opts = presets.resolve("official", "maxc", {"mode": "auto", "beta_vary": 0.9})
    assert (method, opts["mode"], opts["beta_vary"], opts["minf_mode"]) == (
        "maxc",
        "auto",
        0.9,
        "union",
    )
    assert presets.resolve(None, None, {}) == ("reds", {})
    with pytest.raises(ValueError, match="preset='paper'"):
        presets.resolve("paper", None, {})
    with pytest.raises(ValueError, match="minf_mode"):
        Problem(_gen, _VARY, _FIX, method="minf", minf_mode="x")
    official = Problem.official(_gen, _VARY, _FIX, minf_mode="sum")  # a field overrides
    assert (official.method, official.minf_mode, official.cap_k) == ("nullspace", "sum", True)
    assert {**presets.OFFICIAL_PROBLEM, **presets.OFFICIAL_SOLVER} == presets.OFFICIAL


def test_random_uniform_distribution():
    d = 200
    draw = jax.jit(rayleigh.random_system, static_argnums=(1, 2, 3))
    _, uni = draw(jax.random.key(0), d, jnp.float64, "uniform")
    _, orth = draw(jax.random.key(0), d, jnp.float64, "orthogonal")
    uni, orth = np.asarray(uni), np.asarray(orth)
    np.testing.assert_allclose(np.linalg.norm(uni, axis=1), 1.0, atol=1e-12)
    # Bounded entries: |x| <= 0.5 over a row norm of about sqrt(d/12), so |v_i|·sqrt(d) < ~1.8;
    # Gaussian-like orthogonal rows reach about 4 over 40 000 entries.
    assert np.max(np.abs(uni)) * np.sqrt(d) < 2.0 < 3.0 < np.max(np.abs(orth)) * np.sqrt(d)
    # E|x| / sqrt(E x²) is sqrt(3)/2 = 0.866 for a uniform law, sqrt(2/pi) = 0.798 for a Gaussian.
    ratio = np.mean(np.abs(uni)) * np.sqrt(d)
    assert abs(ratio - np.sqrt(3) / 2) < 0.01
    # Not orthogonal (independent columns), unlike the default.
    off = np.abs(uni @ uni.T - np.eye(d))
    assert off.max() > 0.15 and np.abs(orth @ orth.T - np.eye(d)).max() < 1e-12


def test_gram_noise_is_seeded_and_small():
    common = dict(method="nullspace", k=2, beta_vary=0.999)
    z = jnp.asarray(_Z0)
    base = directions(Problem(_gen, _VARY, _FIX, **common), z).vectors
    noisy = Problem(_gen, _VARY, _FIX, gram_noise=1e-9, **common)
    a = directions(noisy, z, key=jax.random.key(5)).vectors
    b = directions(noisy, z, key=jax.random.key(5)).vectors
    c = directions(noisy, z, key=jax.random.key(6)).vectors
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert 0 < float(jnp.max(jnp.abs(a - c))) < 1e-6
    assert 0 < float(jnp.max(jnp.abs(a - base))) < 1e-6


def test_job_config_and_cli_preset(capsys):
    from reds_jax.jobs import cli
    from reds_jax.jobs.experiment import JobConfig

    cfg = JobConfig.from_mapping(
        {"model": "rooms", "preset": "official", "options": {"mode": "fwd"}}
    )
    assert cfg.method == "nullspace"
    assert cfg.options["mode"] == "fwd" and cfg.options["beta_vary"] == 0.999
    assert cfg.options["cap_k"] is False  # a job's shapes are fixed
    assert "preset" not in JobConfig.from_mapping({"model": "rooms"}).identity()
    assert (
        JobConfig.from_mapping({"model": "rooms", "preset": "official", "method": "maxc"}).method
        == "maxc"
    )
    code = cli.main(["traverse", "--model", "rooms", "--preset", "paper"])
    err = capsys.readouterr().err
    assert code == 2 and "field 'preset'" in err and "official" in err


def test_official_random_local_path_is_linear():
    """The reference's ``rand`` re-draws a full basis at every step, so its local path keeps the
    direction: with the preset (span = all of R^d) the local path equals the linear one."""
    problem = Problem.official(_gen, _VARY, _FIX, method="random", k=2)
    z0 = jnp.asarray(_Z0)
    local = traverse(problem, z0, solver=OFFICIAL, steps=4, key=jax.random.key(2)).latents
    v = (np.asarray(local[:, 1]) - _Z0[None]) / 0.1
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-12)
    linear = _Z0[None, None] + 0.1 * np.arange(5.0)[None, :, None] * v[:, None, :]
    np.testing.assert_allclose(np.asarray(local), linear, atol=1e-12)
    assert abs(float(v[0] @ v[2])) > 1e-3  # the uniform directions are not orthogonal
