"""The documentation site as a reader sees it: built, served on loopback, opened in headless Chromium.

Playwright's Python package drives Debian's Chromium (/usr/bin/chromium; never a downloaded
browser). Checked: every page of the navigation loads (HTTP 200) without a console error or an
uncaught exception, and every image on it has loaded (naturalWidth > 0: the benchmark charts);
search finds a term; code blocks carry Material's copy button; a screenshot is taken.

Without Chromium or Playwright the test skips, unless DEPLOY_LSTM_REQUIRE_BROWSER=1 (CI sets it:
.ci/run installs Chromium), where it fails.
"""

from __future__ import annotations

import functools
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = pytest.mark.slow


def _require(ok: bool, why: str) -> None:
    if not ok:
        if os.environ.get("DEPLOY_LSTM_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{why} (DEPLOY_LSTM_REQUIRE_BROWSER=1)")
        pytest.skip(why)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built with --strict (once per session: test_docs.site_once), served on 127.0.0.1."""
    from test_docs import site_once  # tests/ is on sys.path (rootdir conftest, no package)

    out = site_once(tmp_path_factory)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):  # no access log on the test's stderr
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(out)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="module")
def browser():
    _require(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    _require(_has("playwright"), "the playwright package is missing (the test extra)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        yield b
        b.close()


def _open(browser, url: str):
    """A new page at url, with the console errors and uncaught exceptions it produced."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list = []
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    response = page.goto(url, wait_until="load")  # "load": after every image, script and stylesheet
    assert response is not None and response.status == 200, f"{url}: HTTP {response and response.status}"
    return page, errors


def _broken_images(page) -> list:
    return page.eval_on_selector_all(
        "article img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")


def test_every_nav_page_loads_clean(site, browser, tmp_path) -> None:
    home, errors = _open(browser, site)
    hrefs = home.eval_on_selector_all("nav.md-nav--primary a.md-nav__link[href]", "links => links.map(a => a.href)")
    pages = sorted({h.split("#")[0] for h in hrefs if h.startswith(site)})
    home.close()
    assert len(pages) >= 15, pages  # the guides, results, references, versions, changelog
    charts = 0
    for url in pages:
        page, errors = _open(browser, url)
        assert not errors, f"{url}: {errors}"
        assert page.locator("article h1").count() >= 1, f"{url}: no title"
        assert not _broken_images(page), f"{url}: images that did not load: {_broken_images(page)}"
        charts += page.locator("article img").count()
        page.close()
    assert charts >= 5  # the committed charts: LSTM matrix, streaming, serving, three variants


def test_search_finds_a_term(site, browser) -> None:
    page, errors = _open(browser, site)
    page.wait_for_load_state("networkidle")  # the search index is fetched by a worker after load
    page.keyboard.press("/")  # Material's search shortcut, as a reader would press it
    page.keyboard.type("sequence_id", delay=20)  # typed: Material searches on key events
    page.wait_for_selector(".md-search-result__item", timeout=20_000)
    results = page.locator(".md-search-result__item")
    assert results.count() > 0
    assert "serving" in " ".join(results.locator("a").evaluate_all("as => as.map(a => a.href)")).lower()
    assert not errors, errors


def test_code_copy_button_and_screenshot(site, browser, tmp_path) -> None:
    page, errors = _open(browser, urljoin(site, "guides/folder/"))
    copy = page.locator("article button[data-md-type='copy'], article button.md-clipboard")  # Material 9.7+, older
    assert page.locator("pre > code").count() >= 3
    assert copy.count() == page.locator("article pre > code").count(), "a code block without its copy button"
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    copy.nth(1).click()  # the runner example: what lands on the clipboard is the block's code
    assert "deploy_lstm.load(\"out\")" in page.evaluate("navigator.clipboard.readText()")
    shot = Path(os.environ.get("DEPLOY_LSTM_SCREENSHOTS", tmp_path)) / "folder.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
    page.goto(urljoin(site, "results/matrix/"), wait_until="load")
    chart = page.locator("article img").first
    assert chart.evaluate("i => i.naturalWidth") > 0
    page.screenshot(path=str(shot.with_name("matrix.png")), full_page=False)
    assert not errors, errors
