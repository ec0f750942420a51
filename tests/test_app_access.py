"""The explorer runs only what its operator allowed (issue 40 A): nothing typed into the page or
sent to its API is imported, called or opened; one compute job at a time, with a time limit."""

from __future__ import annotations

import dataclasses
import re
import sys
import threading
import time

import numpy as np
import pytest

from reds_jax.app import access
from reds_jax.app import explorer as E
from tests.helpers import registered_model, toy_loader

# importable callables an attacker would name (each does harm if the page imported and called it)
HOSTILE = ["os:system", "subprocess:run", "builtins:eval", "shutil:rmtree", "posix:system"]
INPUTS = E.Inputs(
    model="rooms",
    model_args="size=8, latent_dim=2",
    vary="lowpass:1",
    fix="highpass:1",
    k=1,
    steps=1,
    step_size=0.3,
)

EVIL = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")

def factory(**kwargs):
    pathlib.Path({marker!r}).write_text("called")
    import jax.numpy as jnp
    return (lambda z: jnp.zeros((8, 8, 3), z.dtype) + z[0] * 0.1 + 0.5), 2
"""


@pytest.fixture
def evil(tmp_path, monkeypatch):
    """A module ``evil_mod_<n>`` on sys.path that writes a marker file when imported or called."""
    name = f"evil_mod_{abs(hash(str(tmp_path))) % 10**8}"
    marker = tmp_path / "PWNED"
    (tmp_path / f"{name}.py").write_text(EVIL.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield f"{name}:factory", marker
    sys.modules.pop(name, None)


def _page(explorer, tmp_path):
    from reds_jax.app import ui

    return ui, ui._Page(explorer, str(tmp_path))


def _how(model, model_args="", vary="lowpass:1", fix=""):
    return [model, model_args, 0, 0, vary, fix, "reds", "local", 1, 1, 0.3, "dense", "", None, 0]


def test_page_and_api_never_import_a_typed_model(evil, tmp_path):
    """Every entry point refuses hostile names with a clear message; nothing runs or imports."""
    gr = pytest.importorskip("gradio")
    name, marker = evil
    explorer = E.Explorer()
    ui, page = _page(explorer, tmp_path)
    for model in [name, *HOSTILE]:
        args = f'command="touch {marker}"'
        for fn, arg in (
            (explorer.config, dataclasses.replace(INPUTS, model=model, model_args=args)),
            (explorer.run, dataclasses.replace(INPUTS, model=model, model_args="")),
            (E.model_choice, model),
        ):
            with pytest.raises(E.AppError, match="is not allowed on this page"):
                fn(arg)
        with pytest.raises(E.AppError, match="is not allowed on this page"):
            explorer.model(model, {"command": f"touch {marker}"})
        for cb, args_ in (
            (page.start_image, (model, args, "seed", 0, 0, "", "", None, None)),
            (page.model_defaults, (model,)),
            (page.run, ("seed", None, None, *_how(model, args))),
            (page.invert, (str(tmp_path / "x.png"), 10, 1, None, *_how(model))),
        ):
            with pytest.raises(gr.Error, match="is not allowed on this page") as err:
                ui._safe(cb)(*args_)
            assert "allow-model" in str(err.value)
    assert not marker.exists() and name.split(":")[0] not in sys.modules
    # the control: the same factory, allowed by the operator, is imported and called
    allowed = E.Explorer(allowed=access.Allowed.of([name]))
    allowed.model(name, {})
    assert marker.read_text() == "called"


def test_paths_only_inside_allowed_folders(tmp_path):
    inside = tmp_path / "ckpts"
    (inside / "sub").mkdir(parents=True)
    ckpt = inside / "sub" / "ffhq.msgpack"
    ckpt.write_bytes(b"")
    outside = tmp_path / "elsewhere.msgpack"
    outside.write_bytes(b"")
    (inside / "link.msgpack").symlink_to(outside)
    none, some = E.Explorer(), E.Explorer(allowed=access.Allowed.of(folders=[inside]))
    for explorer in (none, some):
        for model in (str(outside), str(inside / "link.msgpack"), f"{inside}/../elsewhere.msgpack"):
            with pytest.raises(E.AppError, match="not allowed on this page"):
                explorer.config(dataclasses.replace(INPUTS, model=model, model_args=""))
        for args in ('root="/etc"', 'path="../rooms.msgpack"', f'params_or_path="{outside}"'):
            for model in ("faces", "rooms_gan", "rooms"):
                with pytest.raises(E.AppError, match="not allowed on this page"):
                    explorer.config(dataclasses.replace(INPUTS, model=model, model_args=args))
        with pytest.raises(E.AppError, match="weights of feature 'arcface'"):
            explorer.config(dataclasses.replace(INPUTS, fix="arcface:/etc/passwd"))
        with pytest.raises(E.AppError, match="weights of feature 'arcface'"):
            explorer.features(["lowpass:1@arcface:../x.pth"])
    with pytest.raises(E.AppError, match="--allow-checkpoints DIR"):
        none.config(dataclasses.replace(INPUTS, model=str(ckpt), model_args=""))
    for text in (str(ckpt), "sub/ffhq.msgpack"):  # absolute, or relative to an allowed folder
        cfg = some.config(dataclasses.replace(INPUTS, model=text, model_args=""))
        assert cfg.model == E.STYLEGAN2_FACTORY
        assert cfg.model_args == {"params_or_path": str(ckpt), "space": "z"}
    assert some.allowed.checkpoints() == [str(ckpt)]
    with pytest.raises(E.AppError, match="not allowed on this page without a checkpoint"):
        some.model(E.STYLEGAN2_FACTORY, {})
    with pytest.raises(access.AccessError, match="no such folder"):
        access.Allowed.of(folders=[tmp_path / "missing"])
    with pytest.raises(access.AccessError, match="package.module:factory"):
        access.Allowed.of(["os system"])


def test_one_job_at_a_time_with_a_time_limit():
    calls = []
    with registered_model("slow_toy", lambda: (calls.append(1), toy_loader(2, 8))[1]):
        explorer = E.Explorer(max_seconds=0.05)
        gate = threading.Event()
        orig = explorer._run

        def slow(*args):
            gate.wait(10)
            return orig(*args)

        explorer._run = slow
        inputs = dataclasses.replace(INPUTS, model="slow_toy", model_args="")
        with pytest.raises(E.AppError, match="longer than this server's limit of 0.05 s"):
            explorer.run(inputs)
        with pytest.raises(E.AppError, match="another run or inversion is in progress"):
            explorer.run(inputs)
        gate.set()
        deadline = time.monotonic() + 120
        while explorer._compute.locked():  # the abandoned run finishes, then the slot is free
            assert time.monotonic() < deadline
            time.sleep(0.05)
        explorer.max_seconds = 600.0
        res = explorer.run(inputs)
        assert (
            res.arrays["latents"].shape == (1, 2, 2, 2) and np.isfinite(res.arrays["latents"]).all()
        )
    with pytest.raises(ValueError, match="max_seconds"):
        E.Explorer(max_seconds=float("nan"))


def test_app_command_allow_lists_and_host_warning(capsys, monkeypatch, tmp_path):
    pytest.importorskip("gradio")
    from reds_jax.app import ui
    from reds_jax.jobs import cli

    launched = {}

    class Demo:
        def queue(self, **kw):
            return self

        def launch(self, **kw):
            launched.update(kw)

    def build(explorer, model, files_root):
        launched["explorer"] = explorer
        return Demo()

    monkeypatch.setattr(ui, "build", build)
    assert cli.main(["app", "--host", "0.0.0.0", "--no-browser"]) == 0
    err = capsys.readouterr().err
    assert "warning: --host 0.0.0.0" in err and "no authentication" in err
    assert launched["auth"] is None and launched["server_name"] == "0.0.0.0"
    assert launched["explorer"].allowed == access.Allowed()
    argv = ["app", "--host", "0.0.0.0", "--auth", "ann:s3cret", "--no-browser"]
    argv += ["--allow-model", "reds_jax.generators.stylegan2:stylegan2"]
    argv += ["--allow-checkpoints", str(tmp_path), "--max-seconds", "30"]
    assert cli.main(argv) == 0
    assert "warning" not in capsys.readouterr().err and launched["auth"] == ("ann", "s3cret")
    ex = launched["explorer"]
    assert ex.allowed.factories == ("reds_jax.generators.stylegan2:stylegan2",)
    assert ex.allowed.folders == (tmp_path.resolve(),) and ex.max_seconds == 30
    for bad, message in [
        (["--allow-model", "os system"], "package.module:factory"),
        (["--allow-checkpoints", str(tmp_path / "no")], "no such folder"),
        (["--auth", "nopassword"], "USER:PASSWORD"),
        (["--max-upload-mb", "nan"], "--max-upload-mb"),
        (["--max-upload-mb", "-1"], "--max-upload-mb"),
        (["--max-seconds", "0"], "--max-seconds"),
        (["--model", "missing.msgpack"], "no StyleGAN2 checkpoint"),
    ]:
        code = cli.main(["app", *bad])
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]  # after argparse's usage lines
        assert code == 2 and last.startswith("reds-jax app: error:") and message in last, err


def test_gradio_api_refuses_hostile_models(tmp_path):
    """The live server's API (what gradio_client sends) refuses ``os:system``; nothing runs."""
    pytest.importorskip("gradio")
    gradio_client = pytest.importorskip("gradio_client")
    from reds_jax.app import ui

    marker = tmp_path / "PWNED"
    demo = ui.build(E.Explorer(), files_root=str(tmp_path))
    demo.queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        client = gradio_client.Client(url, verbose=False)
        for model in ("os:system", "subprocess:getoutput"):
            with pytest.raises(Exception, match="is not allowed on this page"):
                client.predict(
                    model,
                    f'command="touch {marker}"',
                    "seed",
                    0,
                    0,
                    "",
                    "",
                    api_name="/start_image",
                )
            with pytest.raises(Exception, match="is not allowed on this page"):
                client.predict(model, api_name="/model_defaults")
    finally:
        demo.close()
    assert not marker.exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"correct": 10**9}, "correct=1000000000 is out of range: pass 0 <= correct <= 16"),
        ({"options": "max_iters=1000000000000"}, "max_iters=1000000000000 is too large"),
        ({"options": "cold_iters=100000"}, "cold_iters=100000 is too large"),
        ({"options": "probes=1000000000"}, "probes=1000000000 is too large"),
        ({"options": "tol=1.5"}, "tol must be a finite number > 0 and < 1"),
        ({"options": "ridge"}, "options: expected KEY=VALUE"),
        ({"options": 'cap_k="yes"'}, "cap_k must be True or False"),
        ({"vary": "@".join(["lowpass:1"] * 300)}, "at most 1000"),
        ({"vary": "@".join(["pixels"] * 40)}, "composes 40 stages; join at most 16"),
        ({"steps": 10**6}, "steps=1000000 is out of range"),
    ],
)
def test_page_bounds_every_count(change, message):
    with pytest.raises(E.AppError, match=re.escape(message)) as err:
        E.Explorer().config(dataclasses.replace(INPUTS, **change))
    assert len(str(err.value)) < 600
