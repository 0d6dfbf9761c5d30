"""The reviewers' web app through FastAPI's TestClient, on a real SQLite store.

Login and logout, the queue and its filters, the item page, claiming with
"next", decisions, undo and release, statistics, cutouts, and the security
rules: no page or cutout without a session, no POST without the session's CSRF
token (every POST route is tried), forged or expired cookies, open redirects,
login throttling, disabled accounts.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from contracts.errors import ConfigError
from review import ReviewError, ReviewStore
from review.web import WebConfig, create_app
from review.web.app import SESSION_COOKIE
from review.web.security import _Signer, _signing_key
from tests.review._helpers import review_catalog

with warnings.catch_warnings():  # starlette asks for httpx2; httpx still works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SECRET = "test-secret-of-the-web-app-0123456789"
PASSWORDS = {"alice": "alice-password", "bob": "bob-password"}
SIZE = 120


def _image(catalog, size: int = SIZE) -> np.ndarray:
    """Noise plus a Gaussian at every catalog position (so the cutouts show something)."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:size, :size]
    img = rng.normal(100.0, 3.0, (size, size))
    for x, y in zip(catalog["x"], catalog["y"]):
        img += 200.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2))
    return img.astype(np.float32)


@pytest.fixture
def web_store(tmp_path):
    """A SQLite store with two exposures (4 + 3 items, cutouts) and two reviewers."""
    store = ReviewStore(f"sqlite:///{tmp_path / 'review.sqlite'}")
    one = review_catalog(4, seed=1, size=SIZE, kinds=("star", "galaxy", "streak", "artifact"))
    two = review_catalog(3, seed=2, size=SIZE, kinds=("galaxy",), start_id=100)
    two["review_reason"] = ["near a bright star's halo"] * len(two)
    store.enqueue(one, exposure="exp-one", catalog_id="cat-one", image=_image(one))
    store.enqueue(two, exposure="exp-two", catalog_id="cat-two", image=_image(two))
    for name, password in PASSWORDS.items():
        store.add_reviewer(name, password)
    yield store
    store.close()


def _client(store: ReviewStore, **options) -> TestClient:
    return TestClient(create_app(store, config=WebConfig(secret=SECRET, **options)))


@pytest.fixture
def client(web_store):
    return _client(web_store)


_TOKEN_RE = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def _token(html: str) -> str:
    found = _TOKEN_RE.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def _login(client: TestClient, name: str = "alice", password: str | None = None) -> str:
    """Log in through the form; return the session's CSRF token."""
    page = client.get("/login")
    assert page.status_code == 200
    r = client.post(
        "/login",
        data={"name": name, "password": password or PASSWORDS[name], "csrf_token": _token(page.text),
              "next": "/queue"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/queue"
    return _token(client.get("/queue").text)


def _next(client: TestClient, csrf: str, **filters) -> int:
    """Claim the next item with "next"; return its id."""
    r = client.post("/next", data={"csrf_token": csrf, **filters}, follow_redirects=False)
    assert r.status_code == 303
    found = re.match(r"/items/(\d+)", r.headers["location"])
    assert found, r.headers["location"]
    return int(found.group(1))


def _item_ids(html: str) -> set[int]:
    return {int(i) for i in re.findall(r'href="/items/(\d+)', html)}


# --------------------------------------------------------------------------- login


def test_pages_redirect_to_login_and_cutouts_refuse_without_a_session(client, web_store):
    for path in ("/", "/queue", "/queue?kind=star", "/items/1", "/stats"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/login?next=%2F"), path
    digest = web_store.get_item(1).cutouts["png_zoom1"]
    r = client.get(f"/cutouts/{digest}")
    assert r.status_code == 401
    assert "log in" in r.text


def test_login_logout_and_cookie_flags(client):
    page = client.get("/login")
    assert "moe_review_login=" in page.headers["set-cookie"]
    r = client.post("/login", data={"name": "alice", "password": PASSWORDS["alice"],
                                    "csrf_token": _token(page.text)}, follow_redirects=False)
    set_cookie = r.headers["set-cookie"].lower()
    assert "moe_review_session=" in set_cookie
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    page = client.get("/queue")
    assert "Signed in as <strong>alice</strong>" in page.text
    assert client.get("/login", follow_redirects=False).headers["location"] == "/queue"
    csrf = _token(page.text)
    # logging out revokes the session: the old cookie no longer works
    old = client.cookies.get(SESSION_COOKIE)
    r = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, old)
    assert client.get("/queue", follow_redirects=False).status_code == 303


def test_login_refuses_wrong_passwords_unknown_names_and_missing_csrf(client):
    page = client.get("/login")
    token = _token(page.text)
    for name, password in (("alice", "wrong-password"), ("mallory", "whatever-pass"), ("alice", "")):
        r = client.post("/login", data={"name": name, "password": password, "csrf_token": token},
                        follow_redirects=False)
        assert r.status_code == 401, (name, password)
        assert "wrong password" in r.text
        assert SESSION_COOKIE not in client.cookies
    # no token, a wrong token, or no pre-login cookie: 403
    r = client.post("/login", data={"name": "alice", "password": PASSWORDS["alice"]}, follow_redirects=False)
    assert r.status_code == 403
    r = client.post("/login", data={"name": "alice", "password": PASSWORDS["alice"], "csrf_token": "f" * 64},
                    follow_redirects=False)
    assert r.status_code == 403
    client.cookies.clear()
    r = client.post("/login", data={"name": "alice", "password": PASSWORDS["alice"], "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 403
    assert SESSION_COOKIE not in client.cookies


def test_login_with_an_api_token(web_store):
    token = web_store.add_reviewer("carol")  # token-only account
    client = _client(web_store)
    page = client.get("/login")
    r = client.post("/login", data={"token": token, "csrf_token": _token(page.text)}, follow_redirects=False)
    assert r.status_code == 303
    assert "Signed in as <strong>carol</strong>" in client.get("/queue").text


def test_login_redirects_only_to_local_paths(client):
    page = client.get("/login?next=/stats")
    assert 'name="next" value="/stats"' in page.text
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        page = client.get("/login", params={"next": target})
        r = client.post("/login", data={"name": "alice", "password": PASSWORDS["alice"], "next": target,
                                        "csrf_token": _token(page.text)}, follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == "/queue", target
        client.cookies.clear()


def test_failed_logins_are_throttled(web_store):
    client = _client(web_store, login_attempts=3)
    token = _token(client.get("/login").text)
    codes = [client.post("/login", data={"name": "alice", "password": "nope-nope", "csrf_token": token}).status_code
             for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    r = client.post("/login", data={"name": "alice", "password": PASSWORDS["alice"], "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 429  # even the right password waits out the window
    # another name from the same address still may try, until the address's own limit (5 x 3)
    r = client.post("/login", data={"name": "bob", "password": PASSWORDS["bob"], "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303
    client.cookies.clear()
    token = _token(client.get("/login").text)
    codes = [client.post("/login", data={"name": f"user{i}", "password": "nope-nope", "csrf_token": token})
             .status_code for i in range(13)]
    assert codes == [401] * 12 + [429]


def test_forged_expired_and_disabled_sessions_are_refused(client, web_store):
    _login(client)
    good = client.cookies.get(SESSION_COOKIE)
    body, mac = good.rsplit(".", 1)
    signer = _Signer(_signing_key(WebConfig(secret=SECRET)))
    bob_body = signer.sign("session", {"r": "bob", "e": 2**40, "n": "x"}).rsplit(".", 1)[0]
    forged = [
        body + "." + "0" * 64,  # wrong signature
        bob_body + "." + mac,  # alice's signature on a payload naming bob
        body + "." + mac.upper(),
        _Signer(b"another key").sign("session", {"r": "alice", "e": 2**40, "n": "x"}),  # other key
        signer.sign("session", {"r": "alice", "e": 1, "n": "x"}),  # expired
        signer.sign("session", {"r": "nobody", "e": 2**40, "n": "x"}),  # no such account
        signer.sign("login", {"r": "alice", "e": 2**40, "n": "x"}),  # signed for another purpose
        "garbage",
    ]
    for value in forged:
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, value)
        assert client.get("/queue", follow_redirects=False).status_code == 303, value
    # a valid signature with the right key is accepted (the test's signer matches the app's)
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, signer.sign("session", {"r": "bob", "e": 2**40, "n": "y"}))
    assert "Signed in as <strong>bob</strong>" in client.get("/queue").text
    # disabling an account ends its sessions at once
    web_store.set_reviewer_disabled("bob")
    assert client.get("/queue", follow_redirects=False).status_code == 303


# --------------------------------------------------------------------------- CSRF


def _post_routes(app) -> list[str]:
    return sorted(r.path for r in app.routes if "POST" in (getattr(r, "methods", None) or ()))


def test_every_post_route_refuses_without_session_or_csrf_token(web_store):
    client = _client(web_store)
    routes = _post_routes(client.app)
    assert set(routes) == {"/login", "/logout", "/next", "/undo", "/items/{item_id:int}/decide",
                           "/items/{item_id:int}/claim", "/items/{item_id:int}/release"}
    csrf = _login(client)
    item = _next(client, csrf)  # alice holds a lease, so a forged decide/release would succeed
    other = _client(web_store)
    other_csrf = _login(other, "bob")  # a valid token, but of another session
    before = len(web_store.audit_trail())
    session = client.cookies.get(SESSION_COOKIE)
    for route in routes:
        path = route.replace("{item_id:int}", str(item))
        data = {"action": "accept", "name": "alice", "password": PASSWORDS["alice"]}
        for bad in (None, "", "0" * 64, other_csrf, csrf.upper()):
            form = dict(data) if bad is None else {**data, "csrf_token": bad}
            r = client.post(path, data=form, follow_redirects=False)
            assert r.status_code == 403, (path, bad, r.status_code)
            assert "CSRF" in r.text
        # the token in a header is checked the same way
        r = client.post(path, data=data, headers={"X-CSRF-Token": other_csrf}, follow_redirects=False)
        assert r.status_code == 403, path
        if route != "/login":
            # without the session cookie: 401, even with a once-valid token
            client.cookies.clear()
            r = client.post(path, data={**data, "csrf_token": csrf}, follow_redirects=False)
            assert r.status_code == 401, path
            client.cookies.set(SESSION_COOKIE, session)
    assert len(web_store.audit_trail()) == before  # nothing happened
    assert web_store.decisions(item) == []
    # and the real token works (header form too)
    r = client.post(f"/items/{item}/decide", data={"action": "reject"}, headers={"X-CSRF-Token": csrf},
                    follow_redirects=False)
    assert r.status_code == 303
    assert [d.action for d in web_store.decisions(item)] == ["reject"]


# --------------------------------------------------------------------------- the queue


def test_queue_lists_items_with_filters(client, web_store):
    _login(client)
    everything = _item_ids(client.get("/queue").text)
    assert everything == {i.id for i in web_store.list_items()}
    assert len(everything) == 7
    one = _item_ids(client.get("/queue", params={"exposure": "exp-one"}).text)
    assert one == {i.id for i in web_store.list_items(exposure="exp-one")} and len(one) == 4
    galaxies = _item_ids(client.get("/queue", params={"kind": "galaxy"}).text)
    assert galaxies == {i.id for i in web_store.list_items(kind="galaxy")} and len(galaxies) == 4
    halo = _item_ids(client.get("/queue", params={"reason": "bright star"}).text)
    assert halo == {i.id for i in web_store.list_items(exposure="exp-two")}
    both = _item_ids(client.get("/queue", params={"kind": "galaxy", "exposure": "exp-one"}).text)
    assert len(both) == 1
    assert _item_ids(client.get("/queue", params={"status": "decided"}).text) == set()
    page = client.get("/queue", params={"exposure": "no-such-exposure"})
    assert "No items match these filters." in page.text
    # a bad status is refused with the store's message, not a traceback
    r = client.get("/queue", params={"status": "bogus"})
    assert r.status_code == 400 and "status must be one of" in r.text
    # paging
    small = _client(web_store, page_size=3)
    _login(small)
    first = small.get("/queue")
    assert len(_item_ids(first.text)) == 3 and "Next page" in first.text
    third = small.get("/queue", params={"page": 3})
    assert len(_item_ids(third.text)) == 1 and "Next page" not in third.text


def test_next_claims_by_filter_and_reports_an_empty_queue(client, web_store):
    csrf = _login(client)
    claimed = {_next(client, csrf, exposure="exp-two") for _ in range(3)}
    assert claimed == {i.id for i in web_store.list_items(exposure="exp-two")}
    assert all(i.lease_owner == "alice" for i in web_store.leased_to("alice"))
    r = client.post("/next", data={"csrf_token": csrf, "exposure": "exp-two"}, follow_redirects=False)
    assert r.status_code == 303 and "empty=1" in r.headers["location"]
    assert "Nothing left to claim" in client.get(r.headers["location"]).text


def test_next_releases_an_item_skipped_without_a_decision(client, web_store):
    csrf = _login(client)
    first = _next(client, csrf)
    r = client.post("/next", data={"csrf_token": csrf, "current": str(first)}, follow_redirects=False)
    second = int(re.match(r"/items/(\d+)", r.headers["location"]).group(1))
    assert second != first
    assert [i.id for i in web_store.leased_to("alice")] == [second]


# --------------------------------------------------------------------------- an item


def test_item_page_shows_cutouts_probabilities_votes_and_reason(client, web_store):
    csrf = _login(client)
    item_id = _next(client, csrf)
    item = web_store.get_item(item_id)
    html = client.get(f"/items/{item_id}").text
    assert f"Item #{item_id}" in html
    assert item.reason in html
    for name in ("png_zoom1", "png_zoom4"):
        assert f'src="/cutouts/{item.cutouts[name]}"' in html
    assert f'href="/cutouts/{item.cutouts["fits"]}"' in html
    for cls in ("star", "galaxy", "streak", "artifact"):
        assert f'<th scope="row">{cls}</th><td>{100 * item.probs[cls]:.1f}\u00a0%</td>' in html
    for expert, w in item.weights.items():
        assert f'<th scope="row">{expert}</th><td>{w:.3g}</td>' in html
    assert "chi2 = " in html  # ev_point_chi2 under the point expert
    # keyboard shortcuts: a / r / u, 1-4 relabel (survey), n next
    for key, what in (("a", "accept"), ("r", "reject"), ("u", "uncertain")):
        assert f'value="{what}" data-key="{key}"' in html
    for key, cls in enumerate(("star", "galaxy", "streak", "artifact"), start=1):
        assert f'name="relabel" value="{cls}" data-key="{key}"' in html
    assert 'data-key="n"' in html
    assert '<script src="/static/review.js" defer></script>' in html
    assert "Claimed by you until" in html
    js = client.get("/static/review.js")
    assert js.status_code == 200 and "data-key" in js.text


def test_item_page_escapes_catalog_text(tmp_path):
    store = ReviewStore(f"sqlite:///{tmp_path / 'x.sqlite'}")
    cat = review_catalog(1, seed=3, size=SIZE)
    cat["review_reason"] = ["<script>alert('x')</script>"]
    store.enqueue(cat, exposure="<b>exp</b>", catalog_id="c")
    store.add_reviewer("alice", PASSWORDS["alice"])
    client = _client(store)
    _login(client)
    html = client.get("/items/1").text
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html
    assert "<b>exp</b>" not in html
    assert "No image cutouts" in html  # enqueued without an image
    store.close()


def test_microscopy_items_offer_their_own_classes(tmp_path):
    store = ReviewStore(f"sqlite:///{tmp_path / 'm.sqlite'}")
    store.enqueue(review_catalog(2, seed=4, size=SIZE, kinds=("nucleus",)), exposure="cells.tif",
                  catalog_id="cells", mode="microscopy")
    store.add_reviewer("alice", PASSWORDS["alice"])
    client = _client(store)
    csrf = _login(client)
    item_id = _next(client, csrf)
    html = client.get(f"/items/{item_id}").text
    assert 'name="relabel" value="nucleus" data-key="1"' in html
    assert 'name="relabel" value="artifact" data-key="2"' in html
    assert 'value="galaxy"' not in html
    r = client.post(f"/items/{item_id}/decide", data={"csrf_token": csrf, "relabel": "galaxy"})
    assert r.status_code == 400 and "relabel to one of nucleus, artifact" in r.text
    r = client.post(f"/items/{item_id}/decide", data={"csrf_token": csrf, "relabel": "artifact"},
                    follow_redirects=False)
    assert r.status_code == 303
    assert [(d.action, d.label) for d in store.decisions(item_id)] == [("relabel", "artifact")]
    store.close()


def test_decisions_by_form_are_stored(client, web_store):
    csrf = _login(client)
    decided = {}
    for form in ({"action": "accept", "comment": "  clear point source "}, {"action": "reject"},
                 {"action": "uncertain"}, {"relabel": "galaxy"}):
        item_id = _next(client, csrf)
        r = client.post(f"/items/{item_id}/decide", data={"csrf_token": csrf, **form}, follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"].startswith(f"/items/{item_id}?decided=")
        page = client.get(r.headers["location"]).text
        assert "Decision recorded" in page and "You decided" in page
        decided[item_id] = form
    for item_id, form in decided.items():
        (d,) = web_store.decisions(item_id)
        assert d.reviewer == "alice"
        if "relabel" in form:
            assert (d.action, d.kind, d.label) == ("relabel", "galaxy", "galaxy")
        else:
            assert d.action == form["action"]
    comments = [d.comment for i in decided for d in web_store.decisions(i)]
    assert "clear point source" in comments


def test_bad_decisions_are_refused_and_change_nothing(client, web_store):
    csrf = _login(client)
    item_id = _next(client, csrf)
    for form, status, words in (
        ({"action": "approve"}, 400, "action must be one of"),
        ({}, 400, "action must be one of"),
        ({"relabel": "nucleus"}, 400, "relabel to one of star, galaxy, streak, artifact"),
        ({"action": "relabel"}, 400, "relabel to one of"),
        ({"action": "accept", "comment": "x" * 5001}, 400, "at most 5000 characters"),
    ):
        r = client.post(f"/items/{item_id}/decide", data={"csrf_token": csrf, **form})
        assert r.status_code == status, form
        assert words in r.text, (form, r.text)
    assert web_store.decisions(item_id) == []
    # deciding an item one has not claimed: 409 with the store's words
    other = next(i.id for i in web_store.list_items() if i.id != item_id)
    r = client.post(f"/items/{other}/decide", data={"csrf_token": csrf, "action": "accept"})
    assert r.status_code == 409 and "not claimed by this reviewer" in r.text
    page = client.get(f"/items/{other}").text
    assert "You have not claimed this item" in page
    assert '<fieldset class="decide" disabled>' in page
    # an item claimed by someone else
    bob = _client(web_store)
    bob_csrf = _login(bob, "bob")
    bobs = _next(bob, bob_csrf)
    r = client.post(f"/items/{bobs}/decide", data={"csrf_token": csrf, "action": "accept"})
    assert r.status_code == 409
    assert web_store.decisions(bobs) == []


def test_an_item_opened_from_the_queue_is_claimed_and_decided_there(client, web_store):
    csrf = _login(client)
    # the least urgent item, opened from the queue page rather than reached with "next"
    target = min(web_store.list_items(), key=lambda i: (i.priority, -i.id)).id
    page = client.get(f"/items/{target}").text
    assert 'id="claim"' in page and '<fieldset class="decide" disabled>' in page
    r = client.post(f"/items/{target}/claim", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/items/{target}"
    assert [i.id for i in web_store.leased_to("alice")] == [target]
    page = client.get(f"/items/{target}").text
    assert 'id="claim"' not in page and '<fieldset class="decide">' in page
    r = client.post(f"/items/{target}/decide", data={"csrf_token": csrf, "action": "reject"},
                    follow_redirects=False)
    assert r.status_code == 303
    assert [(d.reviewer, d.action) for d in web_store.decisions(target)] == [("alice", "reject")]
    # decided by alice already: not claimable again, and the page says why; nothing changes
    before = len(web_store.audit_trail())
    r = client.post(f"/items/{target}/claim", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.headers["location"] == f"/items/{target}?unclaimable=1"
    assert "cannot be claimed" in client.get(r.headers["location"]).text
    assert len(web_store.audit_trail()) == before
    # an unknown item: 404
    r = client.post("/items/999999/claim", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 404


def test_unknown_items_give_a_clear_404(client):
    csrf = _login(client)
    r = client.get("/items/999999")
    assert r.status_code == 404
    assert "review item 999999: no such item" in r.text
    r = client.post("/items/999999/decide", data={"csrf_token": csrf, "action": "accept"})
    assert r.status_code == 404 and "no such item" in r.text
    r = client.post("/items/999999/release", data={"csrf_token": csrf})
    assert r.status_code == 404
    assert client.get("/items/not-a-number").status_code == 404
    assert client.get("/no/such/page").status_code == 404


def test_undo_and_release(client, web_store):
    csrf = _login(client)
    item_id = _next(client, csrf)
    client.post(f"/items/{item_id}/decide", data={"csrf_token": csrf, "action": "reject"})
    r = client.post("/undo", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/items/{item_id}"
    (d,) = web_store.decisions(item_id)
    assert d.undone_at is not None
    page = client.get(f"/items/{item_id}").text
    assert "(undone " in page and "Claimed by you until" in page  # a fresh lease to decide again
    client.post(f"/items/{item_id}/decide", data={"csrf_token": csrf, "relabel": "artifact"})
    assert [(x.action, x.undone_at is None) for x in web_store.decisions(item_id)] == [
        ("reject", False), ("relabel", True)]
    # nothing more to undo after undoing the only live decision twice? the store undoes the latest only
    client.post("/undo", data={"csrf_token": csrf})
    r = client.post("/undo", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.headers["location"] == "/queue?undone=none"
    assert "no decision to undo" in client.get(r.headers["location"]).text
    # release gives the lease back
    other = _next(client, csrf)
    r = client.post(f"/items/{other}/release", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert other not in {i.id for i in web_store.leased_to("alice")}
    r = client.post(f"/items/{other}/release", data={"csrf_token": csrf})
    assert r.status_code == 409


def test_stats_page(client, web_store):
    csrf = _login(client)
    for action in ("accept", "reject"):
        item_id = _next(client, csrf)
        client.post(f"/items/{item_id}/decide", data={"csrf_token": csrf, "action": action})
    html = client.get("/stats").text
    assert '<dd id="stat-backlog">5 items pending' in html
    assert "2 decisions in the last hour" in html
    assert "mean agreement 100.0\u00a0%" in html
    assert '<th scope="row">alice</th><td>2</td>' in html


# --------------------------------------------------------------------------- cutouts


def test_cutouts_are_served_by_digest_only(client, web_store):
    _login(client)
    item = web_store.get_item(1)
    r = client.get(f"/cutouts/{item.cutouts['png_zoom4']}")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert r.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert r.headers["x-content-type-options"] == "nosniff"
    r = client.get(f"/cutouts/{item.cutouts['fits']}")
    assert r.status_code == 200 and r.content.startswith(b"SIMPLE  =")
    assert r.headers["content-disposition"].startswith("attachment")
    unknown = "0123456789abcdef" * 4
    r = client.get(f"/cutouts/{unknown}")
    assert r.status_code == 404 and "no cutout with digest" in r.text
    for bad in ("abc", item.cutouts["fits"].upper(), item.cutouts["fits"] + "0", "..%2F..%2Fetc%2Fpasswd",
                "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "review.sqlite", "0" * 63 + "g"):
        r = client.get(f"/cutouts/{bad}")
        assert r.status_code == 404, bad
        assert b"root:" not in r.content


def test_security_headers(client):
    pages = [client.get("/login")]
    _login(client)
    pages.append(client.get("/queue"))
    for r in pages:
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["cache-control"] == "no-store"


# --------------------------------------------------------------------------- configuration


def test_web_config_is_validated(monkeypatch):
    with pytest.raises(ConfigError, match="secret"):
        WebConfig(secret="short")
    with pytest.raises(ConfigError, match="session_seconds"):
        WebConfig(session_seconds=1)
    with pytest.raises(ConfigError, match="unknown option"):
        WebConfig.from_mapping({"secrett": "x" * 20})
    monkeypatch.setenv("MOE_REVIEW_SECRET", "too-short")
    with pytest.raises(ConfigError, match="MOE_REVIEW_SECRET"):
        _signing_key(WebConfig())
    monkeypatch.setenv("MOE_REVIEW_SECRET", "x" * 32)
    assert _signing_key(WebConfig()) == _signing_key(WebConfig(secret="x" * 32))
    monkeypatch.delenv("MOE_REVIEW_SECRET")
    assert _signing_key(WebConfig()) != _signing_key(WebConfig())  # random per start


def test_serve_binds_loopback_by_default_and_serves(tmp_path):
    import inspect
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    from review.web import serve

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    url = f"sqlite:///{tmp_path / 'serve.sqlite'}"
    ReviewStore(url).close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MOE_REVIEW_SECRET": "s" * 32, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", f"from review.web import serve; serve(port={port}, db={url!r}, log_level='warning')"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/login", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        assert r.status_code == 200 and "Log in" in r.text
        # the port is taken now: a second server says so in one line
        with pytest.raises(ReviewError, match=rf"127.0.0.1:{port}: cannot listen"):
            serve(port=port, db=url)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
