"""``reds-jax app`` end to end in a real headless browser (Debian Chromium driven by Playwright).

The server runs as ``python -m reds_jax.jobs.cli app`` in a subprocess. The test opens the page,
chooses the rooms model, sets the varied box by clicking two corners on the start image, runs,
waits for the grid, reads back the reported distances and checks them against
``reds_jax.traverse`` with the same settings (computed here, in parallel), downloads
``traversals.npz`` and loads it. It also checks that a bad input shows a message on the page and
that the server then still works, and that the page made no request outside 127.0.0.1.

Needs ``pip install -e ".[app]"`` (Gradio, Playwright's Python package) and the system Chromium
(``apt-get install chromium``; Playwright's own browser download is never used). Without them the
test is skipped with the reason, unless ``REDS_JAX_REQUIRE_BROWSER=1`` (set by ``.ci/run``), where
it fails. ``REDS_JAX_APP_SCREENSHOT=docs/app.png`` saves a screenshot of the page after the run.
"""

import contextlib
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import helpers
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL_ARGS = {"size": 32, "latent_dim": 8}
SEED, STEPS, STEP_SIZE = 3, 3, 0.4
# two clicks at these fractions of the start image make the varied box (top, left, h, w)
CLICKS = ((0.25, 0.25), (0.75, 0.625))
BOX = (0.25, 0.25, 0.375, 0.5)
FIX = "highpass:2"


pytestmark = helpers.browser_mark({"gradio": "app", "playwright": "browser"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _server(port: int):
    env = dict(os.environ, PYTHONPATH=str(ROOT), GRADIO_ANALYTICS_ENABLED="False")
    env.pop("JAX_ENABLE_X64", None)
    cmd = [sys.executable, "-m", "reds_jax.jobs.cli", "app", "--port", str(port), "--no-browser"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(240):
            assert proc.poll() is None, f"the server exited with {proc.returncode}"
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url, timeout=2).close()
                break
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _reference(out: dict, vary: str) -> None:
    """``reds_jax.traverse`` with the page's settings and the CLI's start latent and key."""
    try:
        import jax
        import jax.numpy as jnp

        import reds_jax
        from reds_jax.jobs import models

        m = models.load_model("rooms", **MODEL_ARGS)
        z0 = models.start_latents([SEED], m.latent_dim, dtype=jnp.float32)[0]
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(0), SEED), 1)
        problem = reds_jax.Problem(
            m.generator, models.parse_features([vary]), models.parse_features([FIX])
        )
        step = reds_jax.FixedStep(STEP_SIZE)
        tr = reds_jax.traverse(problem, z0, steps=STEPS, step=step, key=key)
        out["tr"] = jax.tree_util.tree_map(np.asarray, tr)
    except BaseException as err:  # noqa: BLE001 - re-raised in the test thread
        out["error"] = err


def _field(page, elem_id: str):
    """The text or number field of a Gradio component (a slider's number box)."""
    return page.locator(f"#{elem_id} textarea, #{elem_id} input:not([type=range])").first


def _set(page, elem_id: str, value: str) -> None:
    field = _field(page, elem_id)
    field.fill(value)
    field.press("Tab")


_START_SRC = "() => document.querySelector('#start img')?.src"


def _settle(page, quiet: float = 0.6, timeout: float = 180.0) -> None:
    """Wait until no Gradio event has shown a progress bar on the page for ``quiet`` seconds."""
    deadline, since = time.monotonic() + timeout, time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, f"the page was still busy after {timeout:g} s"
        if page.locator(".eta-bar").count():
            since = time.monotonic()
        time.sleep(0.1)


def test_explore_rooms_in_a_browser(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    ref: dict = {}
    outside = []
    with _server(_free_port()) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=helpers.chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.on(
            "request",
            lambda r: None if r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else
            outside.append(r.url),
        )  # fmt: skip
        page.goto(url)
        page.locator("#start img").wait_for()

        # 1. start: the rooms model at 32x32, seed 3
        assert _field(page, "model").input_value() == "rooms"
        _set(page, "model-args", ", ".join(f"{k}={v}" for k, v in MODEL_ARGS.items()))
        _set(page, "seed", str(SEED))
        # 2. the varied box: two clicks on the start image (the builder keeps lowpass sigma 4)
        # as a user does: each click once the page is idle and has shown the last one (CI once
        # lost the box with clicks 0.3 s apart while the start image was re-rendering)
        image = page.locator("#start img").first
        for fx, fy in CLICKS:
            _settle(page)
            before = page.evaluate(_START_SRC)
            box = image.bounding_box()
            image.click(position={"x": fx * box["width"], "y": fy * box["height"]})
            page.wait_for_function(f"s => ({_START_SRC})() !== s", arg=before, timeout=120_000)
        try:
            expect(_field(page, "vary-box")).not_to_have_value("", timeout=30_000)
        except AssertionError:
            raise AssertionError(
                f"two clicks set no box; messages: {page.locator('.toast-body').all_inner_texts()}"
            ) from None
        box = [float(v) for v in _field(page, "vary-box").input_value().split(",")]
        np.testing.assert_allclose(box, BOX, atol=0.02)  # clicks land within a few pixels
        vary = f"lowpass:4@region:{','.join(f'{v:g}' for v in box)}"
        expect(_field(page, "vary-specs")).to_have_value(vary)
        assert _field(page, "fix-specs").input_value() == FIX
        # the library call with the same settings, computed here while the server works
        worker = threading.Thread(target=_reference, args=(ref, vary), daemon=True)
        worker.start()

        # a bad input: a message on the page, no traceback, and the server keeps working
        _set(page, "vary-specs", "nonsense:1")
        page.locator("#run").click()
        expect(page.get_by_text("unknown feature 'nonsense'").first).to_be_visible()
        assert "Traceback" not in page.content()
        _set(page, "vary-specs", vary)

        # 3. how: k = 1, 3 steps of 0.4
        _set(page, "steps", str(STEPS))
        _set(page, "step-size", str(STEP_SIZE))
        page.locator("#run").click()
        # 4. the result
        try:  # compiling takes a while on a loaded machine; the bound only catches a hang
            expect(_field(page, "distances")).not_to_have_value("", timeout=400_000)
        except AssertionError:
            raise AssertionError(
                f"no result; messages on the page: {page.locator('.toast-body').all_inner_texts()}"
            ) from None
        page.locator("#grid img").wait_for()
        report = _field(page, "distances").input_value()
        status = page.locator("#status").inner_text()
        assert "2 paths × 3 steps" in status, status

        if os.environ.get("REDS_JAX_APP_SCREENSHOT"):
            page.screenshot(path=os.environ["REDS_JAX_APP_SCREENSHOT"], full_page=True)
        with page.expect_download() as info:
            page.locator('#downloads a[download="traversals.npz"]').click()
        npz_path = tmp_path / "traversals.npz"
        info.value.save_as(npz_path)
        browser.close()

    assert outside == [], f"the page fetched from outside 127.0.0.1: {outside}"
    worker.join(timeout=300)
    if "error" in ref:
        raise ref["error"]
    tr = ref["tr"]
    # the reported distances are the library's, per path and step
    rows = {}
    for line in report.splitlines():
        head, _, numbers = line.rpartition(": ")
        rows[head] = np.array([float(v) for v in numbers.split()])
    assert set(rows) == {f"{s} {spec} {p}" for s, spec in (("vary", vary), ("fix", FIX))
                         for p in ("+v1", "-v1")}  # fmt: skip
    for side, spec, dists in (
        ("vary", vary, tr.vary_distances[0]),
        ("fix", FIX, tr.fix_distances[0]),
    ):
        for p, label in enumerate(("+v1", "-v1")):
            np.testing.assert_allclose(
                rows[f"{side} {spec} {label}"], dists[p], rtol=2e-3, atol=1e-5
            )
    assert rows[f"vary {vary} +v1"][-1] > 0.05  # the path really moves the varied feature
    # the download is the CLI's traversals.npz for this start latent
    with np.load(npz_path, allow_pickle=False) as data:
        diagnostics = [f"diagnostics_{f}" for f in tr.diagnostics._fields]
        assert sorted(data.files) == sorted(
            ["images", "latents", "vary_distances", "fix_distances", "values", "seeds", "names",
             "vary_features", "fix_features", *diagnostics]
        )  # fmt: skip
        for name, value in zip(diagnostics, tr.diagnostics, strict=True):
            np.testing.assert_allclose(data[name][0], value, rtol=1e-3, atol=1e-6)
        assert data["images"].shape == (1, 2, STEPS + 1, 32, 32, 3)
        assert data["vary_features"].tolist() == [vary] and data["seeds"].tolist() == [SEED]
        np.testing.assert_allclose(data["latents"][0], tr.latents, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(data["vary_distances"][0, 0], tr.vary_distances[0], rtol=1e-3)
