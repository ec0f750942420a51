"""The explorer's page (Gradio) and the ``reds-jax app`` command.

Why Gradio: it is what ML researchers already use for model demos, it ships its whole front end
inside the Python wheel (with the system-font theme used here the page fetches nothing from the
internet: the browser test checks every request), and it gives progress bars, cancellable events,
file downloads and click coordinates on images without any JavaScript of ours. All logic lives in
:mod:`reds_jax.app.explorer`; the functions here only translate widgets to its calls.

Run ``reds-jax app`` (``--host 0.0.0.0`` to expose it, ``--port``); it binds 127.0.0.1 by default.
"""

# no `from __future__ import annotations`: Gradio reads the `gr.SelectData` annotation at run time

import functools
import os
import pathlib
import sys
import tempfile
import traceback
from collections.abc import Sequence

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402

from reds_jax.app import access, ui_args  # noqa: E402
from reds_jax.app import explorer as ex  # noqa: E402
from reds_jax.jobs import models  # noqa: E402
from reds_jax.jobs.experiment import diagnostics_warning  # noqa: E402

__all__ = ["build", "main", "overlay"]

try:
    import gradio as gr

    _SelectData = gr.SelectData
    _PROGRESS = gr.Progress()
except ImportError as _err:  # pragma: no cover - depends on the environment
    gr = None
    _IMPORT_ERROR = _err
    _SelectData = object
    _PROGRESS = None

VARY_COLOR = (230, 40, 40)
FIX_COLOR = (40, 110, 240)
BUILDER_KINDS = ("none", "pixels", "lowpass", "highpass", "band")

CSS = """
#grid img, #frame img, #start img { image-rendering: pixelated; }
#distances textarea { font-family: ui-monospace, monospace; font-size: 12px; }
"""


def _theme():
    fonts = ["ui-sans-serif", "system-ui", "sans-serif"]  # no web fonts: the page works offline
    return gr.themes.Default(font=fonts, font_mono=["ui-monospace", "monospace"])


# ---------------------------------------------------------------------------------------------
# Pictures


def _upscale(image: np.ndarray, size: int = ex.DISPLAY) -> np.ndarray:
    factor = max(1, size // max(image.shape[:2]))
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def overlay(
    image: np.ndarray, vary_box: str, fix_box: str, pending: Sequence[float] | None = None
) -> np.ndarray:
    """The start image upscaled for the page with the boxes drawn (vary red, fix blue).

    Boxes that do not parse are not drawn. ``pending`` is a first click ``(fx, fy)`` (a dot).

    >>> overlay(np.zeros((16, 16, 3), np.uint8), "0.25,0.25,0.5,0.5", "").shape
    (256, 256, 3)
    """
    out = _upscale(np.asarray(image, np.uint8)).copy()
    h, w = out.shape[:2]
    for text, color in ((vary_box, VARY_COLOR), (fix_box, FIX_COLOR)):
        try:
            box = ex.parse_box(text)
        except ex.AppError:
            box = None
        if box is None:
            continue
        top, left, bh, bw = box
        t, lft = int(round(top * h)), int(round(left * w))
        b, r = min(h, int(round((top + bh) * h))), min(w, int(round((left + bw) * w)))
        for lo, hi in ((0, 2),):
            out[t + lo : t + hi, lft:r] = color
            out[max(b - hi, 0) : b - lo, lft:r] = color
            out[t:b, lft + lo : lft + hi] = color
            out[t:b, max(r - hi, 0) : r - lo] = color
    if pending is not None:
        x, y = int(pending[0] * (w - 1)), int(pending[1] * (h - 1))
        out[max(y - 3, 0) : y + 4, max(x - 3, 0) : x + 4] = (255, 220, 0)
    return out


# ---------------------------------------------------------------------------------------------
# Callbacks (thin: everything is in reds_jax.app.explorer)


def _safe(fn):
    """Turns every failure into a message on the page (never a traceback); the server goes on.

    A user's error (an :class:`~reds_jax.app.explorer.AppError` or another ``ValueError`` with a
    message, e.g. the library's validation) is only shown on the page; anything else is a bug,
    shown on the page and logged with its traceback on the server.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except ValueError as err:
            if not str(err).strip():
                raise _bug(err) from None
            raise gr.Error(str(err), print_exception=False) from None
        except Exception as err:  # noqa: BLE001 - reported on the page, logged on the server
            raise _bug(err) from None

    return wrapper


def _bug(err: Exception) -> gr.Error:
    """Logs ``err``'s traceback on the server; the page's message for it."""
    traceback.print_exception(err, file=sys.stderr)
    return gr.Error(
        f"the request failed ({type(err).__name__}: {err}). The server keeps running: "
        "change the settings and try again.",
        print_exception=False,
    )


def _builder_fields(kind):
    """Shows the number boxes the chosen feature kind uses, labelled for it."""
    label, with_high = ex.builder_fields(kind)
    return (
        gr.update(visible=label is not None, label=label or "σ (pixels)"),
        gr.update(visible=with_high),
    )


def _inputs(
    model, model_args, seed, key, vary, fix, method, path, k, steps, step, solver, opts,
    step_target=None, correct=0,
):  # fmt: skip
    return ex.Inputs(
        step_target=step_target,
        correct=correct,
        model=model,
        model_args=model_args,
        seed=seed,
        key=key,
        vary=vary,
        fix=fix,
        method=method,
        path=path,
        k=k,
        steps=steps,
        step_size=step,
        solver=solver,
        options=opts,
    )


class _Page:
    """Callbacks bound to one :class:`~reds_jax.app.explorer.Explorer` and an export folder."""

    def __init__(self, explorer: ex.Explorer, files_root: str):
        self.ex = explorer
        self.files_root = files_root

    def start_image(self, model, model_args, start, seed, key, vary_box, fix_box, latent, pending):
        cfg = self.ex.config(ex.Inputs(model=model, model_args=model_args, key=key))
        if start == "uploaded image" and latent is not None:
            z = np.asarray(latent)
        else:
            z = self.ex.start_latent(cfg, seed)
        return overlay(self.ex.image(cfg, z), vary_box, fix_box, pending)

    def model_defaults(self, model):
        name, _ = ex.model_choice(model, self.ex.allowed)
        entry = models.get_entry(name)
        kinds = [k for k in ex.feature_kinds(model) if k not in BUILDER_KINDS]
        kinds = list(BUILDER_KINDS) + kinds
        return (
            "\n".join(entry.vary),
            "\n".join(entry.fix),
            entry.step_size,
            gr.update(choices=kinds[1:]),
            gr.update(choices=kinds),
            entry.solver,  # rooms_flow (d = 3,072) is matrix-free
        )

    @staticmethod
    def spec(kind, sigma, high, box, outside):
        try:
            return ex.feature_spec(kind, sigma, high, box, outside), ""
        except ex.AppError as err:
            return gr.update(), f"⚠ {err}"

    @staticmethod
    def click(target, pending, vary_box, fix_box, evt: _SelectData):
        x, y = evt.index[0], evt.index[1]
        pending, box = ex.click_box(pending, x, y, ex.DISPLAY, ex.DISPLAY)
        if box is not None and target == "fix box":
            fix_box = box
        elif box is not None:
            vary_box = box
        return pending, vary_box, fix_box

    def run(self, start, latent, progress=_PROGRESS, *how):
        """``how``: the "How" widgets in the order of :func:`_inputs`; Gradio injects ``progress``
        at its position (it must come before ``*how``)."""
        inputs = _inputs(*how)
        if latent is None and start == "uploaded image":
            raise ex.AppError("no uploaded image yet: upload one and press 'Invert' first.")
        res = self.ex.run(
            inputs,
            latent=latent if start == "uploaded image" else None,
            progress=progress or ex._no_progress,
        )
        folder = tempfile.mkdtemp(prefix="run-", dir=self.files_root)
        files = self.ex.export(res, folder)
        images = res.arrays["images"][0]
        import pandas as pd

        plot = pd.DataFrame(ex.plot_rows(res), columns=["step", "distance", "series"])
        status = [
            f"**{len(res.path_labels)} paths × {res.config.steps} steps** in {res.seconds:.1f} s "
            + (
                "(compiled this configuration)"
                if res.compiled
                else "(reused the compiled traversal)"
            )
        ]
        status += ex.summary_lines(res.arrays["values"][0], res.diagnostics)
        warning = diagnostics_warning(res.arrays)
        if warning:
            status.append(f"⚠ {warning}")
        return (
            _upscale_grid(images),
            gr.update(choices=res.path_labels, value=res.path_labels[0]),
            gr.update(maximum=res.config.steps, value=res.config.steps),
            _upscale(images[0, -1]),
            plot,
            ex.distance_table(res),
            "\n\n".join(status),
            [str(files[k]) for k in ("grid", "npz", "toml", "command", "latents") if k in files],
            files["command"].read_text().strip(),
            files["toml"].read_text(),
            res,
        )

    @staticmethod
    def scrub(result, label, step):
        if result is None:
            return None
        labels = result.path_labels
        p = labels.index(label) if label in labels else 0
        t = int(min(max(int(step or 0), 0), result.config.steps))
        return _upscale(result.arrays["images"][0, p, t])

    def invert(self, upload, inv_steps, restarts, progress=_PROGRESS, *how):
        if upload is None:
            raise ex.AppError("upload an image file (PNG or JPEG) first.")
        latent, psnr, recon = self.ex.invert(
            _inputs(*how),
            upload,
            steps=inv_steps,
            restarts=restarts,
            progress=progress or ex._no_progress,
        )
        return latent, "uploaded image", f"Inverted: PSNR **{psnr:.1f} dB**", _upscale(recon)


def _upscale_grid(images: np.ndarray) -> np.ndarray:
    from reds_jax import imageio

    return imageio.grid(images, scale=imageio.auto_scale(images.shape[2]))


def build(
    explorer: ex.Explorer | None = None, *, model: str = "rooms", files_root: str | None = None
):
    """The Gradio page.

    Args:
      explorer: the shared :class:`~reds_jax.app.explorer.Explorer` (a new one by default).
      model: the model selected when the page opens.
      files_root: folder for the downloads of each run (default: a temporary folder).

    Returns:
      A ``gradio.Blocks`` (call ``.queue().launch(...)``, or use :func:`main`).
    """
    if gr is None:  # pragma: no cover
        raise ImportError(
            f"reds-jax app needs Gradio: pip install 'reds-jax[app]' ({_IMPORT_ERROR})."
        )
    page = _Page(explorer or ex.Explorer(), files_root or tempfile.mkdtemp(prefix="reds_jax_app_"))
    entry = models.get_entry(ex.model_choice(model, page.ex.allowed)[0])
    kinds = list(BUILDER_KINDS) + [k for k in ex.feature_kinds(model) if k not in BUILDER_KINDS]
    choices = list(dict.fromkeys([model, *page.ex.allowed.choices(models.available_models())]))

    with gr.Blocks(title="reds-jax explorer", analytics_enabled=False) as demo:
        gr.Markdown(
            "## REDs explorer\nPick what to change and what to hold on the start image, run, "
            "and keep the result. Click two corners on the start image to set a box. The feature "
            "specs below are the ones `reds-jax traverse --vary/--fix` takes."
        )
        latent = gr.State(None)
        pending = gr.State(None)
        result = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                gr.Markdown("### 1 · Start")
                model_in = gr.Dropdown(
                    choices, value=model, label="model", allow_custom_value=True,
                    info="a registered name, or a factory or StyleGAN2 .msgpack checkpoint "
                    "the server's operator allowed",
                    elem_id="model",
                )  # fmt: skip
                model_args = gr.Textbox(
                    label="model arguments",
                    placeholder="size=32, latent_dim=8",
                    elem_id="model-args",
                )
                start = gr.Radio(["seed", "uploaded image"], value="seed", label="start from")
                with gr.Row():
                    seed = gr.Number(0, label="seed", precision=0, minimum=0, elem_id="seed")
                    random_seed = gr.Button("random", size="sm", elem_id="random-seed")
                start_img = gr.Image(
                    label="start image (click two corners to set a box)", interactive=False,
                    elem_id="start", format="png", show_label=True,
                )  # fmt: skip
                target = gr.Radio(["vary box", "fix box"], value="vary box", label="clicks set")
                with gr.Accordion("start from your own image", open=False):
                    upload = gr.File(
                        label="image (PNG/JPEG)", file_types=["image"], elem_id="upload"
                    )
                    with gr.Row():
                        inv_steps = gr.Number(300, label="inversion steps", precision=0)
                        inv_restarts = gr.Number(4, label="restarts", precision=0)
                    invert_btn = gr.Button("Invert", elem_id="invert")
                    psnr = gr.Markdown("")
            with gr.Column(scale=1):
                gr.Markdown("### 2 · What to change / hold")
                sides = {}
                for side, default_box, first in (
                    ("vary", "", kinds[2]), ("fix", "", kinds[3])
                ):  # fmt: skip
                    with gr.Group():
                        with gr.Row():
                            kind = gr.Dropdown(
                                kinds if side == "fix" else kinds[1:], value=first,
                                label=f"{side}: feature", elem_id=f"{side}-kind",
                            )  # fmt: skip
                            label, with_high = ex.builder_fields(first)
                            sigma = gr.Number(
                                4 if side == "vary" else 2, label=label or "σ (pixels)",
                                visible=label is not None,
                            )  # fmt: skip
                            high = gr.Number(
                                0.25, label="band: high (cycles per pixel)", visible=with_high
                            )
                        with gr.Row():
                            box = gr.Textbox(
                                default_box, label=f"{side} box: top,left,height,width (fractions)",
                                elem_id=f"{side}-box", placeholder="empty: the whole image",
                            )  # fmt: skip
                            outside = gr.Checkbox(False, label="outside the box")
                        hint = gr.Markdown("")
                        specs = gr.Textbox(
                            "\n".join(getattr(entry, side)), lines=2, elem_id=f"{side}-specs",
                            label=f"{side} feature specs (one per line; edit freely)",
                        )  # fmt: skip
                    sides[side] = (kind, sigma, high, box, outside, hint, specs)
                gr.Markdown("### 3 · How")
                with gr.Row():
                    method = gr.Dropdown(list(ex.METHOD_CHOICES), value="reds", label="method")
                    path = gr.Radio(list(ex.PATH_CHOICES), value="local", label="path")
                    solver = gr.Dropdown(list(ex.SOLVER_CHOICES), value="dense", label="solver")
                with gr.Row():
                    k = gr.Slider(1, ex.MAX_K, value=1, step=1, label="k (2k paths)", elem_id="k")
                    steps = gr.Slider(
                        0, ex.MAX_STEPS, value=8, step=1, label="steps", elem_id="steps"
                    )
                with gr.Row():
                    step = gr.Number(
                        entry.step_size,
                        label="step size",
                        elem_id="step-size",
                        step=0.05,
                        minimum=0,
                    )
                    key = gr.Number(0, label="key", precision=0, minimum=0)
                with gr.Row():
                    step_target = gr.Number(
                        None, label="step target (feature change per step; 0: off)",
                        minimum=0, step=0.01,
                    )  # fmt: skip
                    correct = gr.Number(0, label="corrector iterations", precision=0, minimum=0)
                options = gr.Textbox(label="options", placeholder="ridge=1e-4, beta_fix=0.99")
                with gr.Row():
                    run_btn = gr.Button("Run", variant="primary", elem_id="run")
                    cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel")
        gr.Markdown("### 4 · Result")
        status = gr.Markdown("", elem_id="status")
        grid = gr.Image(label="paths × steps", interactive=False, elem_id="grid", format="png")
        with gr.Row():
            with gr.Column(scale=1):
                scrub_path = gr.Dropdown(["+v1", "-v1"], value="+v1", label="path")
                scrub_step = gr.Slider(0, 8, value=0, step=1, label="step", elem_id="scrub")
                frame = gr.Image(label="one step at full size", interactive=False, elem_id="frame")
            with gr.Column(scale=2):
                plot = gr.LinePlot(
                    x="step", y="distance", color="series", label="‖f(G(z_t)) − f(G(z_0))‖",
                    elem_id="plot",
                )  # fmt: skip
        distances = gr.Textbox(
            label="distances per step (side, feature, path: step 0, 1, ...)", lines=4,
            elem_id="distances", buttons=["copy"],
        )  # fmt: skip
        with gr.Tabs():
            with gr.Tab("downloads"):
                files = gr.File(label="downloads", file_count="multiple", elem_id="downloads")
            with gr.Tab("command line"):
                command = gr.Code(
                    label="equivalent command line", language="shell", elem_id="command"
                )
            with gr.Tab("TOML job"):
                toml = gr.Code(label="reds-jax traverse --config job.toml", elem_id="toml")

        # -- wiring --------------------------------------------------------------------------
        how = [model_in, model_args, seed, key, sides["vary"][6], sides["fix"][6], method, path,
               k, steps, step, solver, options, step_target, correct]  # fmt: skip
        view = [model_in, model_args, start, seed, key, sides["vary"][3], sides["fix"][3], latent,
                pending]  # fmt: skip
        show = _safe(page.start_image)
        for side in ("vary", "fix"):
            kind, sigma, high, box, outside, hint, specs = sides[side]
            for comp in (kind, sigma, high, box, outside):
                comp.change(_safe(page.spec), [kind, sigma, high, box, outside], [specs, hint])
            box.change(show, view, start_img)
            kind.change(_builder_fields, kind, [sigma, high])
        model_in.change(
            _safe(page.model_defaults), model_in,
            [sides["vary"][6], sides["fix"][6], step, sides["vary"][0], sides["fix"][0], solver],
        ).then(show, view, start_img)  # fmt: skip
        for comp in (seed, key, start):
            comp.change(show, view, start_img)
        model_args.submit(show, view, start_img)
        model_args.blur(show, view, start_img)
        random_seed.click(lambda: int(np.random.default_rng().integers(0, 2**31)), None, seed)
        start_img.select(
            _safe(page.click), [target, pending, sides["vary"][3], sides["fix"][3]],
            [pending, sides["vary"][3], sides["fix"][3]],
        ).then(show, view, start_img)  # fmt: skip
        run_evt = run_btn.click(
            _safe(page.run), [start, latent, *how],
            [grid, scrub_path, scrub_step, frame, plot, distances, status, files, command, toml,
             result],
            concurrency_id="compute", concurrency_limit=1,
        )  # fmt: skip
        for comp in (scrub_path, scrub_step):
            comp.change(_safe(page.scrub), [result, scrub_path, scrub_step], frame)
        inv_evt = invert_btn.click(
            _safe(page.invert), [upload, inv_steps, inv_restarts, *how],
            [latent, start, psnr, start_img], concurrency_id="compute", concurrency_limit=1,
        )  # fmt: skip
        cancel_btn.click(None, None, None, cancels=[run_evt, inv_evt])
        demo.load(show, view, start_img)
    return demo


def _error(message: str) -> int:
    print(f"reds-jax app: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """``reds-jax app [--host H] [--port P] [--model M] [--allow-model F] [--allow-checkpoints D]
    [--auth USER:PASSWORD] [--max-seconds S]``: serves the page until interrupted.

    The page runs only the registered models, the factories named with ``--allow-model`` (or
    ``--model``) and checkpoints inside the ``--allow-checkpoints`` folders (see
    :mod:`reds_jax.app.access`). A ``--host`` other than loopback prints a warning unless
    ``--auth`` protects the page.

    Returns:
      Exit status (2 for bad arguments or a missing Gradio).
    """
    ns = ui_args.parser().parse_args(argv)
    if gr is None:
        print(
            f"reds-jax app: error: the explorer needs Gradio: pip install 'reds-jax[app]' "
            f"({_IMPORT_ERROR}).",
            file=sys.stderr,
        )
        return 2
    if not 0 < ns.port < 65536:
        return _error(f"--port must be in 1..65535; got {ns.port}.")
    factories = list(ns.allow_model)
    folders = list(ns.allow_checkpoints)
    if ":" in ns.model and ns.model not in models.MODELS:
        factories.append(ns.model)  # the operator named it
    elif ns.model.strip().endswith(".msgpack"):
        folders.append(str(pathlib.Path(ns.model).expanduser().resolve().parent))
    try:
        allowed = access.Allowed.of(factories, folders)
    except access.AccessError as err:
        return _error(str(err))
    try:
        models.get_entry(ex.model_choice(ns.model, allowed)[0])
    except (ex.AppError, ValueError) as err:
        return _error(f"--model: {err}")
    if not access.is_loopback(ns.host) and ns.auth is None:
        print(
            f"reds-jax app: warning: --host {ns.host} exposes the page to the network and it has "
            "no authentication: anyone who can reach the port can run traversals. Pass "
            "--auth USER:PASSWORD, or bind 127.0.0.1 and tunnel.",
            file=sys.stderr,
            flush=True,
        )
    limit = int(ns.max_upload_mb * 2**20)
    explorer = ex.Explorer(max_upload_bytes=limit, allowed=allowed, max_seconds=ns.max_seconds)
    with tempfile.TemporaryDirectory(prefix="reds_jax_app_") as root:
        demo = build(explorer, model=ns.model, files_root=root)
        demo.queue(default_concurrency_limit=4)
        print(f"reds-jax app: serving on http://{ns.host}:{ns.port} (Ctrl+C stops)", flush=True)
        try:
            demo.launch(
                server_name=ns.host,
                server_port=ns.port,
                inbrowser=not ns.no_browser,
                max_file_size=limit,
                theme=_theme(),
                css=CSS,
                ssr_mode=False,
                pwa=False,
                mcp_server=False,
                show_error=True,
                quiet=True,
                allowed_paths=[str(pathlib.Path(root))],
                auth=ns.auth,
            )
        except KeyboardInterrupt:
            pass
        except OSError as err:
            print(
                f"reds-jax app: error: cannot serve on {ns.host}:{ns.port}: {err}", file=sys.stderr
            )
            return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
