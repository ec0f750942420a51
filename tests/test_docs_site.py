"""The documentation site: ``mkdocs build --strict`` succeeds, and the built site, opened in the
headless system Chromium (driven by Playwright, as ``tests/test_app_browser.py`` does), renders the
API page of ``traverse`` from its docstring and makes no request that leaves the machine.

Needs ``pip install -e ".[docs,browser]"`` and the system Chromium (``apt-get install chromium``, or
``REDS_JAX_CHROMIUM=/path/to/chrome``). Without them the test is skipped with the reason, unless
``REDS_JAX_REQUIRE_BROWSER=1`` (set by ``.ci/run``), where it fails.
"""

import contextlib
import functools
import http.server
import os
import pathlib
import subprocess
import sys
import threading

import helpers
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LOCAL = ("http://127.0.0.1", "file://", "data:", "blob:", "about:")


pytestmark = helpers.browser_mark(
    {"mkdocs": "docs", "material": "docs", "mkdocstrings": "docs", "playwright": "browser"}
)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
    """The site built with ``mkdocs build --strict`` into a temporary folder."""
    out = tmp_path_factory.mktemp("docs") / "site"
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_MKDOCS_2_WARNING="1")
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{run.stdout}\n{run.stderr}"
    return out


@contextlib.contextmanager
def _serve(folder: pathlib.Path):
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test's output clean
        pass


def _pages(site: pathlib.Path) -> list[str]:
    """Every page of the built site, as URL paths relative to its root (``""`` is the home)."""
    pages = [p.parent.relative_to(site).as_posix() for p in site.rglob("index.html")]
    return sorted("" if p == "." else p + "/" for p in pages)


def test_site_renders_traverse_api_offline(site):
    from playwright.sync_api import sync_playwright

    pages = _pages(site)
    assert "api/traverse/" in pages and "guides/cli/" in pages, pages
    requests: list[str] = []
    with _serve(site) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=helpers.chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.set_default_timeout(30_000)
            page.goto(url + "api/traverse/", wait_until="networkidle")
            signatures = page.locator(".doc-signature").all_inner_texts()
            text = page.locator("article").inner_text()
            for other in pages:  # every page of the site, each loaded until the network is idle
                page.goto(url + other, wait_until="networkidle")
            page.goto(url + "guides/performance/", wait_until="networkidle")
            tables = page.locator("article table").count()
        finally:
            browser.close()
    # the API page of traverse: its signature, rendered from the code, and its docstring's text
    assert any(s.strip().startswith("traverse(") for s in signatures), signatures
    assert "Trajectories" in text and "FixedStep" in text, text[:2000]
    # a guide's measurement table, read from benchmarks/results at build time
    assert tables >= 1
    outside = [r for r in requests if not r.startswith(LOCAL)]
    assert not outside, f"the site requested {outside}"
    assert len(requests) > len(pages)  # requests were recorded (pages, styles, scripts)
