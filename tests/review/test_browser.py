"""The reviewers' web app in a real headless Chromium (Debian's ``chromium``), driven by Playwright.

A uvicorn server runs the app on a free 127.0.0.1 port over a fresh SQLite
store seeded with a small synthetic catalog and its image (so the cutouts
exist).  The browser logs in through the form, reviews three items with the
keyboard only (``n`` next, ``a`` accept, ``r`` reject, ``2`` relabel to galaxy,
a comment typed first, ``Esc`` to leave the box) and the test then reads the
decisions back from the store.  It also shows that a POST without the CSRF
token (a form posted from the logged-in page) and one without the
session cookie are refused.

Playwright's own browser download does not work offline: the test drives the
system browser at ``/usr/bin/chromium`` (Debian package ``chromium``).  Without
it the test is skipped, saying why, unless ``MOE_REQUIRE_BROWSER=1`` (CI): then
it fails.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from review import ReviewStore
from review.web import WebConfig, create_app
from tests.review._helpers import review_catalog

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # running as root (containers, CI)
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
PASSWORD = "alice-browser-pw"
SIZE = 120


def _require_browser():
    """The Playwright sync API, or skip (fail with MOE_REQUIRE_BROWSER=1) saying what is missing."""
    required = os.environ.get("MOE_REQUIRE_BROWSER", "") not in ("", "0")
    why = None
    if not CHROMIUM.exists():
        why = f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        why = f"the playwright package is not installed ({exc}): pip install playwright"
        sync_playwright = None
    if why is not None:
        if required:
            pytest.fail(f"MOE_REQUIRE_BROWSER is set but {why}")
        pytest.skip(why)
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _image(catalog, size: int = SIZE) -> np.ndarray:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:size, :size]
    img = rng.normal(100.0, 3.0, (size, size))
    for x, y in zip(catalog["x"], catalog["y"]):
        img += 200.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2))
    return img.astype(np.float32)


@pytest.fixture
def served(tmp_path):
    """``(base URL, store)``: uvicorn serving the app in a thread over a seeded SQLite store."""
    import uvicorn

    store = ReviewStore(f"sqlite:///{tmp_path / 'review.sqlite'}")
    catalog = review_catalog(4, seed=5, size=SIZE, kinds=("star", "galaxy", "streak", "artifact"))
    result = store.enqueue(catalog, exposure="exp-browser", catalog_id="cat-browser", image=_image(catalog))
    assert result.added == 4
    store.add_reviewer("alice", PASSWORD)
    app = create_app(store, config=WebConfig(secret="browser-test-secret-0123456789"))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", store
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()


def test_review_three_items_with_the_keyboard_in_chromium(served):
    sync_playwright = _require_browser()
    base, store = served
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.set_default_timeout(15_000)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 404 else None)

            # not logged in: the queue sends us to the login form
            page.goto(f"{base}/queue")
            assert re.search(r"/login\?next=%2Fqueue$", page.url), page.url
            page.fill("#name", "alice")
            page.fill("#password", PASSWORD)
            page.click("#login")
            page.wait_for_url(f"{base}/queue")
            assert "Signed in as alice" in page.inner_text("header")

            def next_item() -> int:
                page.keyboard.press("n")
                page.wait_for_url(re.compile(r"/items/\d+$"))
                return int(re.search(r"/items/(\d+)$", page.url).group(1))

            def decide(key: str, item_id: int, action: str) -> None:
                page.keyboard.press(key)
                page.wait_for_url(re.compile(rf"/items/{item_id}\?decided={action}$"))
                assert "Decision recorded" in page.inner_text("#message")

            # item 1: a comment typed first (its letters must not trigger shortcuts), Esc, then a = accept
            first = next_item()
            images = page.eval_on_selector_all(
                "img.cutout", "els => els.map(e => e.complete && e.naturalWidth > 0)")
            assert images and all(images), "the cutouts did not load"
            page.click("#comment")
            page.keyboard.type("a real star, not an artifact")
            page.keyboard.press("Escape")
            decide("a", first, "accept")
            # item 2: r = reject
            second = next_item()
            decide("r", second, "reject")
            # item 3: 2 = relabel to the second survey class, galaxy
            third = next_item()
            decide("2", third, "relabel")
            assert "You decided relabel" in page.inner_text("#my-decision")
            assert len({first, second, third}) == 3

            # the decisions are in the store
            got = {i: [(d.reviewer, d.action, d.kind, d.comment) for d in store.decisions(i)]
                   for i in (first, second, third)}
            assert got == {
                first: [("alice", "accept", None, "a real star, not an artifact")],
                second: [("alice", "reject", None, None)],
                third: [("alice", "relabel", "galaxy", None)],
            }
            assert store.pending_count() == 1
            assert errors == [], errors

            # a POST from the logged-in page without the CSRF token is refused ...
            fourth = next_item()
            # (a form built in the page, with the session cookie but no token; the page's CSP
            # forbids fetch/XHR altogether: connect-src falls back to default-src 'none')
            with page.expect_navigation() as navigation:
                page.evaluate(
                    """(url) => {
                        const form = document.createElement("form");
                        form.method = "post";
                        form.action = url;
                        const field = document.createElement("input");
                        field.name = "action";
                        field.value = "accept";
                        form.appendChild(field);
                        document.body.appendChild(form);
                        form.submit();
                    }""",
                    f"{base}/items/{fourth}/decide",
                )
            refused = navigation.value
            assert refused.status == 403, refused.status
            assert "CSRF" in page.content()
            page.go_back()
            # ... and so is one with the token but without the session cookie
            token = page.get_attribute("#decide-form input[name=csrf_token]", "value")
            assert token and re.fullmatch(r"[0-9a-f]{64}", token)
            anonymous = browser.new_context()
            r = anonymous.request.post(f"{base}/items/{fourth}/decide",
                                       form={"action": "accept", "csrf_token": token}, max_redirects=0)
            assert r.status == 401, r.status
            anonymous.close()
            assert store.decisions(fourth) == []
            # with both, it goes through (the refusals were not for another reason)
            r = context.request.post(f"{base}/items/{fourth}/decide",
                                     form={"action": "uncertain", "csrf_token": token}, max_redirects=0)
            assert r.status == 303
            assert [d.action for d in store.decisions(fourth)] == ["uncertain"]
            context.close()
        finally:
            browser.close()


def test_a_missing_browser_skips_unless_required(monkeypatch, tmp_path):
    monkeypatch.setitem(globals(), "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("MOE_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium"):
        _require_browser()
    monkeypatch.setenv("MOE_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="MOE_REQUIRE_BROWSER is set"):
        _require_browser()
