"""Time to first result: the compile-cache switch, augment's lock (removed on exit, stale lock
taken over), resume messages, ``convert --help``, delegated program names and lazy imports."""

import fcntl
import os
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from reds_jax import compile_cache
from reds_jax.jobs import augment as A
from reds_jax.jobs import cli, models

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _toy(latent_dim: int = 4, size: int = 8):
    w = np.random.default_rng(0).standard_normal((size * size * 3, latent_dim)) / 2.0

    def generator(z):
        return 0.5 * (jnp.tanh(jnp.asarray(w, z.dtype) @ z).reshape(size, size, 3) + 1.0)

    return None, generator, latent_dim


@pytest.fixture(autouse=True)
def toy_model():
    models.register_model(
        "toy_fr", _toy, description="toy", vary=("lowpass:1",), fix=("highpass:1",), step_size=0.2
    )
    yield
    models.MODELS.pop("toy_fr", None)


CFG = {"model": "toy_fr", "seeds": "0:3", "k": 1, "steps": 1, "shard_size": 2, "batch_size": 2}


def _run(code: str, env: dict[str, str], *args: str) -> str:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    full.pop("REDS_JAX_NO_COMPILE_CACHE", None)
    res = subprocess.run(
        [sys.executable, "-c", code, *args], env=full, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


# ---------------------------------------------------------------------------------------------
# Compile cache


def test_cli_turns_the_compile_cache_on_unless_told_not_to(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(compile_cache, "enable_compile_cache", lambda *a, **k: calls.append(a))
    monkeypatch.delenv(compile_cache.DISABLE_ENV, raising=False)
    bad = ["traverse", "--model", "no_such_model"]  # exits 2 after the switch, before any work
    assert cli.main(bad) == 2 and len(calls) == 1
    assert cli.main([*bad, "--no-compile-cache"]) == 2 and len(calls) == 1
    assert cli.main(["--no-compile-cache", *bad]) == 2 and len(calls) == 1
    monkeypatch.setenv(compile_cache.DISABLE_ENV, "1")
    assert cli.main(bad) == 2 and len(calls) == 1
    monkeypatch.setenv(compile_cache.DISABLE_ENV, "0")
    assert cli.main(bad) == 2 and len(calls) == 2
    capsys.readouterr()


def test_enable_writes_entries_and_the_library_alone_leaves_jax_config_alone(tmp_path):
    lib = _run(
        "import jax, jax.numpy as jnp, reds_jax\n"
        "g = lambda z: jnp.tanh(jnp.arange(24.0).reshape(12, 2) @ z / 24).reshape(2, 2, 3)\n"
        "p = reds_jax.Problem(g, vary=[lambda x: x[0]], fix=[lambda x: x[1]])\n"
        "reds_jax.traverse(p, jnp.ones(2), steps=2)\n"
        "print(jax.config.jax_compilation_cache_dir)",
        {"REDS_JAX_CACHE": str(tmp_path)},
    )
    assert lib.split() == ["None"] and not (tmp_path / "xla").exists()
    out = _run(
        "from reds_jax.jobs import cli\n"
        "print(cli._compile_cache(False))\n"
        "import jax, jax.numpy as jnp\n"
        "jax.jit(lambda x: jnp.sin(x) * 3)(jnp.ones(3)).block_until_ready()\n"
        "print(jax.config.jax_compilation_cache_dir)",
        {"REDS_JAX_CACHE": str(tmp_path)},
    )
    assert out.split() == ["True", str((tmp_path / "xla").resolve())]
    assert any((tmp_path / "xla").iterdir())  # min compile time 0: the tiny compile is cached


SUBCOMMANDS = ("demo", "traverse", "augment", "invert", "evaluate", "bench", "convert", "app")
HELP_PROBE = """import sys
from reds_jax.jobs import cli
try:
    code = cli.main(sys.argv[1:])
except SystemExit as err:
    code = err.code
print("EXIT", code, "JAX", "jax" in sys.modules, "GRADIO", "gradio" in sys.modules)
"""


@pytest.mark.parametrize(
    "command",
    [[], *([c] for c in SUBCOMMANDS), ["convert", "stylegan2"]],
    ids=lambda c: " ".join(c) or "top",
)
def test_every_help_imports_neither_jax_nor_gradio(command):
    out = subprocess.run(
        [sys.executable, "-c", HELP_PROBE, *command, "--help"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.stdout.strip().endswith("EXIT 0 JAX False GRADIO False"), out.stderr[-2000:]
    assert f"usage: {' '.join(['reds-jax', *command])}" in " ".join(out.stdout.split())


# ---------------------------------------------------------------------------------------------
# Delegated commands


def test_convert_help_exits_zero_and_names_reds_jax(capsys):
    assert cli.main(["convert", "--help"]) == 0
    text = out_of(capsys)
    assert "usage: reds-jax convert" in text and "stylegan2" in text
    assert cli.main(["convert"]) == 2 and "usage: reds-jax convert" in out_of(capsys, 1)
    assert cli.main(["convert", "nope"]) == 2 and "unknown converter 'nope'" in out_of(capsys, 1)
    with pytest.raises(SystemExit) as exit_:
        from reds_jax.generators import stylegan2_convert

        stylegan2_convert.main(["--help"], prog="reds-jax convert stylegan2")
    assert exit_.value.code == 0 and "usage: reds-jax convert stylegan2" in out_of(capsys)
    assert cli.main(["convert", "stylegan2", "--help"]) == 0
    assert "usage: reds-jax convert stylegan2" in out_of(capsys)


def out_of(capsys, stream: int = 0) -> str:
    return capsys.readouterr()[stream] or ""


def test_evaluate_help_is_named_reds_jax_evaluate(capsys):
    assert cli.main(["evaluate", "--help"]) == 0
    assert "usage: reds-jax evaluate" in capsys.readouterr().out


def test_demo_help_lists_every_registered_model(capsys):
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in ("faces", "rooms", "rooms_gan"):
        assert name in models.MODELS and name in text


# ---------------------------------------------------------------------------------------------
# Augment: lock and resume


def test_lock_is_removed_after_a_normal_finish_and_a_resume_says_what_it_skipped(tmp_path, capsys):
    out = tmp_path / "job"
    first = A.augment(CFG, out, progress=True)
    assert first.written == (0, 1) and not (out / A.LOCK_FILE).exists()
    err = capsys.readouterr().err
    assert "reds-jax augment: first batch of 2 ready after" in err  # then the bar, rate after it
    again = A.augment(CFG, out, progress=True)
    assert again.written == () and again.skipped == (0, 1)
    assert "2 of 2 shard(s) already finished (sha256 verified) and skipped" in out_of(capsys, 1)
    assert not (out / A.LOCK_FILE).exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "job"
    out.mkdir()
    (out / A.LOCK_FILE).write_text(f"{dead.pid}\n")
    res = A.augment(CFG, out, progress=False)
    assert res.written == (0, 1) and not (out / A.LOCK_FILE).exists()
    err = out_of(capsys, 1)
    assert f"taking over the stale lock {out / A.LOCK_FILE} of process {dead.pid}" in err
    assert "no longer running" in err


def test_a_live_lock_is_an_error_naming_its_pid(tmp_path):
    out = tmp_path / "job"
    out.mkdir()
    with open(out / A.LOCK_FILE, "a+") as f:
        f.write("424242\n")
        f.flush()
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        with pytest.raises(A.AugmentError, match="another augment job .pid 424242. is writing"):
            A.augment(CFG, out, progress=False)
    assert not list(out.glob("shard-*.npz"))  # nothing was written under another job's lock


def test_generator_functions_survive_importing_their_submodules():
    # rooms_oracle / rooms_gan / stylegan2 are functions and submodules of reds_jax.generators:
    # importing a submodule used to replace the lazily exported function by the module.
    code = (
        "import reds_jax.generators.rooms_oracle, reds_jax.generators.rooms_gan, "
        "reds_jax.generators.stylegan2\n"
        "from reds_jax.generators import rooms_oracle, rooms_gan, stylegan2\n"
        "import reds_jax.generators as g\n"
        "print(all(callable(f) and f.__name__ == n for f, n in "
        "[(rooms_oracle, 'rooms_oracle'), (rooms_gan, 'rooms_gan'), (stylegan2, 'stylegan2'), "
        "(g.rooms_oracle, 'rooms_oracle')]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


COMPILE_PHASE = """import sys
from reds_jax.jobs import cli
cli._compile_cache(False)
import jax, jax.numpy as jnp
from reds_jax.jobs.progress import compile_phase
f = jax.jit(lambda x: jnp.cos(jnp.sin(x) @ x.T) * 7)
compile_phase(lambda: f.lower(jnp.ones((3, 3))).compile(), print, what="thing",
              announce_after=float(sys.argv[1]))
"""


def test_a_warm_run_loads_from_the_cache_and_never_says_compiling(tmp_path):
    # Issue 35: "compiling" only when the program is not in the persistent cache (the cache hit
    # is JAX's own event), then which of the two it was.
    env = {"REDS_JAX_CACHE": str(tmp_path)}
    cold = _run(COMPILE_PHASE, env, "0")  # announce at once: the cold run says it compiles
    assert "compiling (first run only, cached afterwards) ..." in cold
    assert "compiled the thing in" in cold and "from the cache" not in cold
    warm = _run(COMPILE_PHASE, env, "0.5")
    assert "loaded the compiled thing from the cache in" in warm and "compiling" not in warm
