"""Property-based fuzzing of the public surface (issue 20): every input gives a finite,
correct-shaped result or a clear ``ValueError`` / one-line CLI error, never a silent NaN and never
an internal JAX error.

Kept fast for CI: tiny shapes (d <= 4, 4x4 images), few examples per property, derandomised (the
same examples on every run), and one jit shape per property where possible (valid values are drawn
from small sets, so compiles are shared between examples).
"""

import io
import json
import math
import pickle
import tomllib
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import png, registered_model, toy_loader
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import reds_jax
from reds_jax import features as F
from reds_jax import imageio
from reds_jax.formats.torch_zip import load_torch_pickle, load_torch_zip
from reds_jax.jobs import cli
from reds_jax.jobs.experiment import ConfigError, JobConfig, parse_seeds

settings.register_profile(
    "reds_jax_fuzz",
    max_examples=30,
    deadline=None,
    derandomize=True,  # reproducible in CI; a failure prints the example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
FUZZ = settings.get_profile("reds_jax_fuzz")


# --- seed specs -------------------------------------------------------------------------------

_token = st.one_of(
    st.integers(-3, 12),
    st.builds(lambda a, b: f"{a}:{b}", st.integers(-2, 12), st.integers(-2, 14)),
    st.sampled_from(["", "x", "1:2:3", " 4 ", "4.0", "1e3", ":", "0:4294967297", "4294967295"]),
    st.booleans(),
    st.floats(allow_nan=True),
    st.none(),
)


def _expand(tokens):
    """The reference meaning of a seed spec (tiny specs only): the seeds in order."""
    out = []
    for t in tokens:
        if isinstance(t, int):
            out.append(t)
        else:
            a, _, b = t.strip().partition(":")
            out.extend(range(int(a), int(b)) if b else [int(a)])
    return out


@FUZZ
@given(st.one_of(_token, st.lists(_token, max_size=5)))
def test_seed_specs(spec):
    try:
        seeds = parse_seeds(spec)
    except ConfigError as err:
        assert str(err).startswith("seeds")
        return
    tokens = spec if isinstance(spec, list) else [spec]
    want = _expand(tokens)
    assert seeds.tolist() == want and len(seeds) == len(want) == len(set(want))
    assert all(0 <= s < 2**32 for s in want)
    assert parse_seeds(seeds.tokens()).tolist() == want  # the canonical spec means the same
    for lo in range(len(want)):
        assert seeds[lo] == want[lo] and seeds[lo:].tolist() == want[lo:]


# --- TOML job configurations -------------------------------------------------------------------

_values = st.one_of(
    st.integers(-2, 5),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.booleans(),
    st.text(max_size=6),
    st.lists(st.integers(0, 3), max_size=3),
    st.sampled_from(["0:4", "pixels", "lowpass:1", "reds", "local", "float32", "dense", "toy_fz"]),
    st.dictionaries(
        st.sampled_from(["ridge", "eps", "mode", "normalize", "weights", "colour"]),
        st.one_of(st.floats(allow_nan=True), st.text(max_size=4), st.booleans()),
        max_size=2,
    ),
)
_fields = st.sampled_from(
    ["model", "seeds", "k", "steps", "step_size", "vary", "fix", "method", "path", "options",
     "dtype", "shard_size", "batch_size", "compress", "key", "latents", "out", "typo"]
)  # fmt: skip


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return {math.inf: "inf", -math.inf: "-inf"}.get(v, "nan" if v != v else repr(v))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")  # TOML-safe
    if isinstance(v, list):
        return "[" + ", ".join(map(_toml_value, v)) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return str(v)


@pytest.fixture(scope="module")
def toy_model():
    with registered_model("toy_fz", toy_loader, vary=("pixels",), fix=()) as name:
        yield name


@FUZZ
@given(st.dictionaries(_fields, _values, max_size=6), st.booleans())
def test_toml_configs(tmp_path_factory, toy_model, fields, augment):
    """A TOML file through the CLI's config merge: a JobConfig, or a one-line usage error."""
    fields = {"model": toy_model, **fields}
    path = tmp_path_factory.mktemp("toml") / "job.toml"
    path.write_text("".join(f"{k} = {_toml_value(v)}\n" for k, v in fields.items()))
    tomllib.loads(path.read_text())  # the test writes valid TOML
    command = "augment" if augment else "traverse"
    ns = cli._parser().parse_args([command, "--config", str(path)])
    try:
        cfg, out = cli._job_config(ns, augment=augment)
    except cli._UsageError as err:
        event("refused")
        text = str(err)
        assert "\n" not in text.strip() or "different" in text
        assert str(path) in text or "--config" in text or "pass" in text
        return
    event("accepted")
    assert isinstance(cfg, JobConfig) and cfg.resolved() == cfg
    assert out is None or isinstance(out, str)
    assert cfg.k >= 1 and cfg.steps >= 0 and math.isfinite(cfg.step_size) and cfg.step_size > 0
    assert cfg.identity()["model"] == toy_model


# --- image files --------------------------------------------------------------------------------

_PNG_KINDS = [  # (colour type, bit depths, samples per pixel)
    (0, (1, 2, 4, 8, 16), 1),  # grey
    (2, (8, 16), 3),  # RGB
    (3, (1, 2, 4, 8), 1),  # palette
    (4, (8, 16), 2),  # grey + alpha
    (6, (8, 16), 4),  # RGBA
]


@st.composite
def _png_files(draw):
    colour, depths, samples = draw(st.sampled_from(_PNG_KINDS))
    depth = draw(st.sampled_from(depths))
    w, h = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    row_bytes = -(-w * samples * depth // 8)
    rows = [draw(st.binary(min_size=row_bytes, max_size=row_bytes)) for _ in range(h)]
    entries = draw(st.integers(1, 16))
    palette = draw(st.binary(min_size=3 * entries, max_size=3 * entries))
    data = png(w, h, depth, colour, rows, palette=palette if colour == 3 else None)
    cut = draw(st.one_of(st.none(), st.integers(0, len(data) - 1)))
    return (data if cut is None else data[:cut]), (colour, depth, w, h, rows, cut)


def _check_image(f, height=4, width=4):
    try:
        x = imageio.read_image(f, height, width)
    except ValueError as err:
        event("refused")
        assert str(f) in str(err)
        return None
    event("read")
    assert x.shape == (height, width, 3) and x.dtype == np.float32
    assert np.all(np.isfinite(x)) and x.min() >= 0.0 and x.max() <= 1.0
    return x


@FUZZ
@given(_png_files())
def test_png_files(tmp_path_factory, made):
    data, (colour, depth, w, h, rows, cut) = made
    f = tmp_path_factory.mktemp("png") / "x.png"
    f.write_bytes(data)
    x = _check_image(f, h, w)
    if cut is None and colour == 0 and x is not None:  # grey: the exact scale of the bit depth
        bits = np.unpackbits(np.frombuffer(b"".join(rows), np.uint8)).reshape(h, -1)
        if depth == 16:
            want = np.frombuffer(b"".join(rows), ">u2").reshape(h, w) / 65535.0
        else:
            groups = bits[:, : w * depth].reshape(h, w, depth)
            want = (groups * (1 << np.arange(depth)[::-1])).sum(-1) / (2**depth - 1)
        np.testing.assert_allclose(x[..., 0], want, atol=1e-6)


@FUZZ
@given(st.binary(max_size=200), st.sampled_from(["x.png", "x.jpg", "x.bmp", "x.webp", "x.gif"]))
def test_random_bytes_as_images(tmp_path_factory, data, name):
    f = tmp_path_factory.mktemp("raw") / name
    f.write_bytes(data)
    _check_image(f)


def _pillow_image(mode, values):
    """A pillow image of ``mode`` from ``values [h, w]`` in [0, 1]."""
    from PIL import Image

    if mode == "I;16":
        return Image.fromarray(np.round(values * 65535).astype(np.uint16))
    if mode == "I":
        return Image.fromarray(np.round(values * 65535).astype(np.int32))
    if mode == "F":
        return Image.fromarray(values.astype(np.float32))
    if mode == "1":
        return Image.fromarray(values > 0.5)
    grey = Image.fromarray(np.round(values * 255).astype(np.uint8))
    return grey if mode == "L" else grey.convert(mode)


@FUZZ
@given(
    st.sampled_from(["L", "RGB", "RGBA", "P", "I;16", "1", "LA", "CMYK", "I", "F"]),
    st.sampled_from(["PNG", "BMP", "WEBP", "GIF", "TIFF", "JPEG"]),
    st.integers(1, 6),
    st.integers(1, 6),
    st.integers(0, 2**32 - 1),
)
def test_pillow_written_images(tmp_path_factory, mode, fmt, w, h, seed):
    values = np.random.default_rng(seed).random((h, w))
    buf = io.BytesIO()
    try:
        _pillow_image(mode, values).save(buf, format=fmt)
    except (OSError, ValueError, KeyError):
        return  # pillow cannot write this mode in this format
    f = tmp_path_factory.mktemp("pil") / f"x.{fmt.lower()}"
    f.write_bytes(buf.getvalue())
    x = _check_image(f, h, w)
    if fmt == "PNG" and mode in ("L", "I;16"):  # lossless grey: the exact values, 8 or 16 bits
        assert x is not None
        np.testing.assert_allclose(x[..., 0], values, atol=0.5 / 255 if mode == "L" else 1e-5)


# --- checkpoint readers --------------------------------------------------------------------------

_pickle_objects = st.recursive(
    st.one_of(st.integers(), st.floats(allow_nan=False), st.text(max_size=4), st.none()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=3), inner, max_size=3),
        st.tuples(inner, inner),
    ),  # fmt: skip
    max_leaves=12,
)


@FUZZ
@given(_pickle_objects, st.integers(0, 5), st.one_of(st.none(), st.integers(0, 400)))
def test_checkpoint_readers(tmp_path_factory, obj, protocol, cut):
    """Plain data round-trips through both readers; any truncation is an UnpicklingError."""
    data = pickle.dumps(obj, protocol=protocol)
    data = data if cut is None else data[:cut]
    for out in _both_readers(tmp_path_factory, data):
        if isinstance(out, Exception):
            assert cut is not None or "Refusing" in str(out), out
        elif cut is None:
            assert out == _plain(obj)


def _both_readers(tmp_path_factory, data: bytes) -> list:
    """``data`` as a torch.save zip's data.pkl and as a plain pickle: what each reader returned,
    or its UnpicklingError / ValueError (any other exception propagates)."""
    folder = tmp_path_factory.mktemp("ckpt")
    with zipfile.ZipFile(folder / "a.pt", "w") as zf:
        zf.writestr("archive/data.pkl", data)
    (folder / "a.pkl").write_bytes(data)
    results = []
    for load, path in ((load_torch_zip, folder / "a.pt"), (load_torch_pickle, folder / "a.pkl")):
        try:
            results.append(load(path))
        except (pickle.UnpicklingError, ValueError) as err:
            results.append(err)
    return results


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_plain(v) for v in obj)
    return obj


# --- traverse / directions arguments ------------------------------------------------------------

_GW = np.array([[1.0, 0.0, 0.5], [0.0, 2.0, 0.0], [0.3, 0.0, 1.0], [0.0, 1.0, 1.0]])


def _gen(z):  # d = 3 -> a 2 x 2 grey image
    return jnp.tanh(jnp.asarray(_GW, z.dtype) @ z).reshape(2, 2, 1)


_VARY = F.region((0.0, 0.0, 1.0, 0.5))  # the left column
_FIX = F.region((0.0, 0.5, 1.0, 0.5))  # the right column
_NAN = float("nan")
_INF = float("inf")

# field -> values: the valid base value first, then invalid ones of every kind. Valid static
# values are few on purpose (each is one compile; see test_directions_* for the solver choices).
_ARGUMENTS = {
    "k": [1, 0, -1, 4, True, 1.5, "1", None],
    "steps": [2, -1, True, 2.0, "2"],
    "step_size": [0.1, 0.0, -0.1, _NAN, _INF, "0.1", None, [0.1]],
    "ridge": [1e-6, -1.0, _NAN, _INF, "big", None],
    "weights": [1.0, [1.0, 1.0], -1.0, _NAN, "x"],
    "vary_weights": [1.0, 0.0, -2.0, _INF],
    "normalize": [True, "no", 1, None],
    "beta_fix": [0.99, 0.0, 1.5, _NAN],
    "method": ["reds", "best", None, 3],
    "path": ["linear", "curved", None],
    "mode": ["auto", "sideways", 3],
    "eps": [1e-3, 0.0, -1e-3, _NAN],
    "key": [None, 5, "bad", "batch"],
}
_VALID = {"k": 1, "steps": 2, "step_size": 0.1, "method": "reds", "path": "linear"}
_PROBLEM_FIELDS = ("k", "ridge", "weights", "vary_weights", "normalize", "beta_fix", "method")


@st.composite
def _latents(draw):
    kinds = ["finite"] * 6 + [
        "nan",
        "inf",
        "empty",
        "rank3",
        "wide",
        "int",
        "list",
        "scalar",
        "string",
    ]
    kind = draw(st.sampled_from(kinds))
    values = draw(st.lists(st.floats(-3, 3), min_size=6, max_size=6))
    z = np.asarray(values).reshape(2, 3)
    return kind, {
        "finite": z,
        "nan": np.where(np.eye(2, 3) > 0, _NAN, z),
        "inf": np.where(np.eye(2, 3) > 0, -_INF, z),
        "empty": np.zeros((0, 3)),
        "rank3": z[None],
        "wide": np.zeros((2, 4)),
        "int": np.round(z).astype(np.int64),
        "list": z.tolist(),
        "scalar": 0.5,
        "string": "z",
    }[kind]


def _key(choice):
    if choice == "batch":  # a batch of keys where one key is expected
        return jax.random.split(jax.random.key(1), 2)
    return choice


def _check_trajectories(tr, n, k, steps, step_size, d=3):
    assert tr.latents.shape == (n, 2 * k, steps + 1, d)
    assert tr.values.shape == (n, k)
    assert bool(jnp.all(jnp.isfinite(tr.latents))) and bool(jnp.all(jnp.isfinite(tr.values)))
    if steps:
        lengths = jnp.linalg.norm(jnp.diff(tr.latents, axis=-2), axis=-1)
        np.testing.assert_allclose(lengths, step_size, rtol=1e-6)
    for dist in (*tr.vary_distances, *tr.fix_distances):
        assert dist.shape == (n, 2 * k, steps + 1)
        assert bool(jnp.all(jnp.isfinite(dist)))
        np.testing.assert_allclose(dist[..., 0], 0.0, atol=1e-12)


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(_ARGUMENTS)), st.integers(0, 8), max_size=2),
       _latents())  # fmt: skip
def test_traverse_arguments(choices, latents):
    """One compiled configuration; every other value is refused before tracing."""
    args = dict(_VALID)
    for name, i in choices.items():
        values = _ARGUMENTS[name]
        args[name] = values[i % len(values)]
    if "key" in args:
        args["key"] = _key(args["key"])
    kind, z0 = latents
    try:
        fields = {n: args[n] for n in _PROBLEM_FIELDS if n in args}
        problem = reds_jax.Problem(_gen, _VARY, [_FIX], **fields)
        solver = reds_jax.Dense(**{n: args[n] for n in ("mode", "eps") if n in args})
        step = reds_jax.FixedStep(args["step_size"])
        tr = reds_jax.traverse(
            problem, z0, solver=solver, path=args["path"], steps=args["steps"], step=step,
            key=args.get("key"),
        )  # fmt: skip
    except ValueError as err:
        event(f"refused: {str(err)[:24]}")
        assert str(err).strip()
        return
    event(f"traversed {kind}")
    assert kind in ("finite", "int", "list")
    _check_trajectories(tr, 2, args["k"], args["steps"], args["step_size"])


_OUTPUTS = {  # feature outputs of every dtype and shape, and values that are not finite
    "matrix": lambda x: jnp.outer(x.ravel(), x.ravel()),
    "float16": lambda x: x.ravel().astype(jnp.float16),
    "nan": lambda x: x.ravel() * jnp.nan,
    "inf": lambda x: jnp.log(x.ravel() * 0.0),
    "int": lambda x: jnp.round(10 * x).astype(jnp.int32).ravel(),
    "bool": lambda x: x.ravel() > 0,
    "complex": lambda x: x.ravel().astype(jnp.complex64),
    "tuple": lambda x: (x.ravel(), x.ravel()),
    "dict": lambda x: {"a": x.ravel()},
    "empty": lambda x: x.ravel()[:0],
    "none": lambda x: None,
    "string": lambda x: "pixels",
    "raises": lambda x: x.ravel()[jnp.asarray([1, 2])] @ jnp.ones(3),
}
_VALID_OUTPUTS = ("matrix", "float16", "nan", "inf")


@FUZZ
@given(st.sampled_from(sorted(_OUTPUTS)), st.sampled_from(["vary", "fix", "both"]))
def test_feature_outputs(kind, role):
    """A feature's output is a floating array, or the error names the feature's argument."""
    feature = _OUTPUTS[kind]
    if kind in _VALID_OUTPUTS:
        role = "both"  # one compile per valid kind: the feature both varied and fixed
    vary = [feature] if role in ("vary", "both") else [_VARY]
    fix = [feature] if role in ("fix", "both") else [_FIX]
    z = jnp.asarray([[0.3, -0.2, 0.1], [0.0, 0.5, -0.4]])
    try:
        dirs = reds_jax.directions(reds_jax.Problem(_gen, vary, fix), z)
    except ValueError as err:
        event(f"refused {kind}")
        assert kind not in _VALID_OUTPUTS, err
        assert ("vary[0]" if role != "fix" else "fix[0]") in str(err), err
        return
    event(f"solved {kind}")
    assert kind in _VALID_OUTPUTS
    assert bool(jnp.all(jnp.isfinite(dirs.vectors))) and bool(jnp.all(jnp.isfinite(dirs.values)))
    np.testing.assert_allclose(jnp.linalg.norm(dirs.vectors, axis=-1), 1.0, rtol=1e-3)
    if kind in ("nan", "inf"):  # the documented fallback, shown in the diagnostics
        assert bool(jnp.all(dirs.diagnostics.nonfinite_jacobian > 0))


@FUZZ
@given(st.sampled_from(["reds", "reds", "nullspace", "minf"]), st.sampled_from([1, 1, 1, 5]),
       st.sampled_from(["dense", "matrix_free"]), _latents())  # fmt: skip
@example("nullspace", 1, "dense", ("finite", np.eye(2, 3)))
@example("minf", 1, "dense", ("finite", np.eye(2, 3)))
@example("reds", 1, "matrix_free", ("finite", np.eye(2, 3)))
def test_directions_are_unit_and_finite_or_refused(method, k, solver, latents):
    """Four compiled configurations (k = 5 > d is refused, matrix-free is reds/maxc only)."""
    kind, z = latents
    try:
        problem = reds_jax.Problem(_gen, _VARY, [_FIX], method=method, k=k)
        solver = reds_jax.Dense() if solver == "dense" else reds_jax.MatrixFree()
        dirs = reds_jax.directions(problem, z, solver=solver)
    except ValueError as err:
        event("refused")
        assert str(err).strip()
        return
    event(f"solved {method} {solver} k={k}")
    assert kind in ("finite", "int", "list")
    assert dirs.vectors.shape == (2, k, 3) and dirs.values.shape == (2, k)
    assert bool(jnp.all(jnp.isfinite(dirs.vectors))) and bool(jnp.all(jnp.isfinite(dirs.values)))
    np.testing.assert_allclose(jnp.linalg.norm(dirs.vectors, axis=-1), 1.0, rtol=1e-6)


# --- pickle opcodes (issue 40 item 5) ------------------------------------------------------------

_COUNTED = {  # opcode -> width of its length field
    b"B": 4, b"C": 1, b"\x8e": 8, b"X": 4, b"\x8c": 1, b"\x8d": 8, b"\x96": 8, b"T": 4, b"U": 1,
    b"\x8a": 1, b"\x8b": 4,
}  # fmt: skip
_SIMPLE = [b"(", b"t", b")", b"l", b"]", b"a", b"e", b"}", b"d", b"s", b"u", b"N", b"\x88",
           b"\x89", b"0", b"2", b"R", b"\x85", b"\x86", b"\x87", b"\x94", b"\x81", b"b"]  # fmt: skip


@st.composite
def _opcodes(draw):
    """A pickle stream: protocol, random opcodes (counted records with any length, globals
    naming harmful callables, frames), then STOP or a cut."""
    out = [b"\x80" + bytes([draw(st.integers(0, 5))])]
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.integers(0, 4))
        if kind == 0:
            op = draw(st.sampled_from(sorted(_COUNTED)))
            width = _COUNTED[op]
            n = draw(st.one_of(st.integers(0, 8), st.sampled_from([2**31 - 1, 2**62, 2**64 - 1])))
            n = min(n, 2 ** (8 * width) - 1)
            out.append(op + n.to_bytes(width, "little") + draw(st.binary(max_size=8)))
        elif kind == 1:
            out.append(draw(st.sampled_from(_SIMPLE)))
        elif kind == 2:
            name = draw(st.sampled_from(["os\nsystem", "builtins\neval", "subprocess\nrun",
                                         "collections\nOrderedDict", "torch\nFloatStorage"]))  # fmt: skip
            out.append(b"c" + name.encode() + b"\n")
        elif kind == 3:
            out.append(
                b"J" + draw(st.integers(-(2**31), 2**31 - 1)).to_bytes(4, "little", signed=True)
            )
        else:
            n = draw(st.one_of(st.integers(0, 16), st.just(2**62)))
            out.append(b"\x95" + n.to_bytes(8, "little"))  # FRAME
    if draw(st.booleans()):
        out.append(b".")
    return b"".join(out)


@FUZZ
@given(_opcodes())
def test_pickle_opcodes_never_run_code_or_exhaust_memory(tmp_path_factory, data):
    """Any opcode stream loads as plain data or is an UnpicklingError/ValueError in both readers:
    never a MemoryError, never a callable, whatever the length fields claim."""
    for out in _both_readers(tmp_path_factory, data):
        if isinstance(out, Exception):
            event(type(out).__name__)
        else:  # plain data only: no callable came out of the file
            assert not any(callable(x) for x in _leaves(out)), out


def _leaves(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _leaves(v)
    elif isinstance(obj, list | tuple | set | frozenset):
        for v in obj:
            yield from _leaves(v)
    else:
        yield obj


# --- the explorer's API (issue 40 item 5) ------------------------------------------------------

_page_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["rooms", "os:system", "subprocess:run", "builtins:eval", "shutil:rmtree",
                     "../x.msgpack", "/etc/passwd", "x.msgpack", "nan", "-1", "1e12", "size=8",
                     'root="/etc"', "max_iters=1000000000000", 'cap_k="yes"', "tol=1.5",
                     "lowpass:4@" * 20, "arcface:/etc/passwd", "0.2,0.2,0.5,0.5"]),
)  # fmt: skip
_page_number = st.one_of(
    st.integers(-5, 70), st.sampled_from([10**12, 1.5, float("nan"), float("inf"), "x", None])
)


@FUZZ
@given(
    model=_page_text, model_args=_page_text, options=_page_text, vary=_page_text,
    k=_page_number, steps=_page_number, correct=_page_number, step_size=_page_number,
)  # fmt: skip
def test_explorer_inputs_are_a_config_or_a_message(model, model_args, options, vary, **numbers):
    """Whatever the page (or its HTTP API) sends, the explorer answers with a bounded
    configuration or an AppError message; it imports and opens nothing."""
    import sys

    from reds_jax.app import explorer as E

    before = set(sys.modules)
    inputs = E.Inputs(
        model=model, model_args=model_args, options=options, vary=vary, fix="", **numbers
    )
    try:
        cfg = E.Explorer().config(inputs)
    except E.AppError as err:
        assert len(str(err)) < 2000
        event("AppError")
    else:
        assert cfg.model in ("rooms", "faces", "rooms_gan")
        assert 1 <= cfg.k <= E.MAX_K and 0 <= cfg.steps <= E.MAX_STEPS
        assert cfg.correct <= E.MAX_CORRECT
    new = {m for m in set(sys.modules) - before if not m.startswith(("reds_jax", "_", "encodings"))}
    assert not new, new
