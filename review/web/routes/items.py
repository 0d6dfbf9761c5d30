"""An item's page, deciding it, claiming and releasing it, and its cutouts."""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from contracts.vocabulary import CLASSES_BY_MODE

from ...errors import ReviewError
from ...store import ACTIONS, Item, Lease, ReviewStore, relabel_kinds, valid_digest
from ..pages import FormFilters, QueryFilters, _clean, _error_page, _render
from ..security import PostSession, Session, _redirect, _state

__all__ = ["RELABEL_CLASSES", "register"]

RELABEL_CLASSES: Mapping[str, tuple[str, ...]] = CLASSES_BY_MODE
"""Classes a reviewer may relabel an item to, per mode, in number-key order (1, 2, ...)."""

_ACTION_KEYS = {"accept": "a", "reject": "r", "uncertain": "u"}
_MEDIA_EXTENSIONS = {"image/png": "png", "application/fits": "fits", "image/fits": "fits"}


def item_page(
    request: Request,
    item_id: int,
    session: Session,
    filters: QueryFilters,
    decided: str | None = None,
    unclaimable: str | None = None,
) -> Response:
    """The item: its cutouts, the gate's evidence, the decisions so far, and the decision buttons."""
    state = _state(request)
    item = state.store.get_item(item_id)
    history = state.store.decisions(item_id)
    classes = relabel_kinds(item.mode)
    mine = [d for d in history if d.reviewer == session.reviewer and d.undone_at is None]
    lease = _my_lease(item, session.reviewer)
    claimable = not mine and lease is None and item.status == "pending"
    return _render(
        request, "item.html",
        {
            "item": item,
            "filters": filters,
            "decisions": history,
            "my_decision": mine[-1] if mine else None,
            "lease": lease,
            "claimable": claimable,
            "classes": classes,
            "class_keys": [(str(i + 1), c) for i, c in enumerate(classes[:9])],
            "probs": _ordered_probs(item.probs, classes),
            "votes": _votes(item.weights, item.evidence),
            "measurements": _measurements(item.evidence),
            "pngs": _png_cutouts(item.cutouts),
            "fits_digest": item.cutouts.get("fits"),
            "action_keys": _ACTION_KEYS,
            "message": _item_message(decided, unclaimable, lease, claimable),
        },
        session=session,
    )


def decide(
    request: Request,
    item_id: int,
    session: PostSession,
    filters: FormFilters,
    action: Annotated[str | None, Form()] = None,
    relabel: Annotated[str | None, Form()] = None,
    comment: Annotated[str | None, Form()] = None,
) -> Response:
    """Record the reviewer's decision (``relabel`` alone means relabel) and show the item again."""
    state = _state(request)
    item = state.store.get_item(item_id)  # 404 before validating the form
    action = _clean(action)
    new_kind = _clean(relabel)
    if new_kind is not None and action in (None, "relabel"):
        action = "relabel"
    if action not in ACTIONS:
        return _error_page(
            request, 400, "Unknown action",
            f"action must be one of {', '.join(ACTIONS)}, got {action!r}",
        )
    classes = relabel_kinds(item.mode)
    if action == "relabel" and new_kind not in classes:
        return _error_page(
            request, 400, "Unknown class",
            f"relabel to one of {', '.join(classes)}, got {new_kind!r}",
        )
    state.store.decide(
        item_id, session.reviewer, action,
        kind=new_kind if action == "relabel" else None,
        comment=(comment.strip() or None) if comment else None,
    )
    return _redirect(f"/items/{item_id}" + filters.query(decided=action))


def claim_item(request: Request, item_id: int, session: PostSession) -> Response:
    """Claim the item on screen (opened from the queue) instead of the most urgent one."""
    state = _state(request)
    state.store.get_item(item_id)  # 404 for an unknown item
    claimed = state.store.claim(session.reviewer, n=1, lease_seconds=state.config.lease_seconds,
                                item_id=item_id)
    return _redirect(f"/items/{item_id}" + ("" if claimed else "?unclaimable=1"))


def release(request: Request, item_id: int, session: PostSession) -> Response:
    """Give the item back undecided and go to the queue."""
    state = _state(request)
    state.store.release(item_id, session.reviewer)
    return _redirect("/queue")


def cutout(request: Request, digest: str, session: Session) -> Response:
    """A stored cutout by its SHA-256 digest: PNGs inline, FITS stamps as a download."""
    if not valid_digest(digest):
        return PlainTextResponse(
            "404 Not Found: a cutout is named by its SHA-256 digest (64 lowercase hex digits)",
            status_code=404,
        )
    state = _state(request)
    try:
        content, media_type = state.store.cutout(digest)
    except (ReviewError, LookupError):
        return PlainTextResponse(
            f"404 Not Found: no cutout with digest {digest}", status_code=404
        )
    disposition = "inline" if media_type.startswith("image/") else "attachment"
    ext = _MEDIA_EXTENSIONS.get(media_type, "bin")
    return Response(
        content,
        media_type=media_type,
        headers={
            "Cache-Control": "private, max-age=86400, immutable",
            "Content-Disposition": f'{disposition}; filename="{digest[:16]}.{ext}"',
        },
    )


def register(app: FastAPI) -> None:
    """Add an item's page, ``POST`` decide / claim / release, and ``GET /cutouts/{digest}`` to ``app``."""
    app.get("/items/{item_id:int}", response_class=HTMLResponse)(item_page)
    app.post("/items/{item_id:int}/decide")(decide)
    app.post("/items/{item_id:int}/claim")(claim_item)
    app.post("/items/{item_id:int}/release")(release)
    app.get("/cutouts/{digest}")(cutout)


# --------------------------------------------------------------------------- helpers


def _item_message(decided: str | None, unclaimable: str | None, lease: Lease | None,
                  claimable: bool) -> str | None:
    """The note at the top of the item page (after a decision, a refused claim, or an unclaimed item)."""
    if decided in ACTIONS:
        return f"Decision recorded: {decided}. Press n for the next item."
    if unclaimable and lease is None:
        return ("This item cannot be claimed: it already has all the reviewers it needs, "
                "or you decided it before. Press n to claim the most urgent item for you.")
    if claimable:
        return ("You have not claimed this item: claim it to decide it here, "
                "or press n to claim the most urgent item for you.")
    return None


def _my_lease(item: Item, reviewer: str) -> Lease | None:
    """The reviewer's live lease on the item, if any (an item may have ``k`` leases)."""
    now = _dt.datetime.now(_dt.UTC)
    for lease in item.leases:
        if lease.reviewer == reviewer and lease.expires_at > now:
            return lease
    return None


def _release_if_undecided(store: ReviewStore, item_id: int, reviewer: str) -> None:
    """Give back an item the reviewer claimed and skipped with "next" (best effort)."""
    try:
        item = store.get_item(item_id)
        if _my_lease(item, reviewer) is not None:
            store.release(item_id, reviewer)
    except ReviewError:  # gone, or the lease ended meanwhile: nothing to give back
        pass


def _ordered_probs(probs: Mapping[str, Any], classes: tuple[str, ...]) -> list[tuple[str, Any]]:
    """Class probabilities, the mode's classes first, highest first otherwise."""
    first = [(c, probs[c]) for c in classes if c in probs]
    rest = sorted(((c, p) for c, p in probs.items() if c not in classes), key=lambda cp: cp[0])
    return first + rest


def _votes(
    weights: Mapping[str, Any], evidence: Mapping[str, Any]
) -> list[tuple[str, Any, list[tuple[str, Any]]]]:
    """Each expert's gate weight and evidence: ``(expert, weight, [(quantity, value)])``.

    Evidence columns are ``ev_<expert>_<quantity>`` (the experts' ``score``
    columns); a column whose expert has no weight (e.g. the learned expert's
    ``ev_p_star``) is listed under the expert ``"(other)"`` with its full name.
    Highest weight first.
    """
    experts = sorted(weights, key=len, reverse=True)  # longest prefix wins
    per: dict[str, list[tuple[str, Any]]] = {e: [] for e in weights}
    other: list[tuple[str, Any]] = []
    for key, value in sorted(evidence.items()):
        if not key.startswith("ev_"):
            continue
        name = key[3:]
        owner = next((e for e in experts if name.startswith(e + "_")), None)
        if owner is None:
            other.append((name, value))
        else:
            per[owner].append((name[len(owner) + 1:], value))

    def weight(expert: str) -> float:
        w = weights.get(expert)
        if isinstance(w, bool) or not isinstance(w, (int, float)) or math.isnan(w):
            return -1.0
        return float(w)

    rows = [(e, weights[e], per[e]) for e in sorted(weights, key=lambda e: (-weight(e), e))]
    if other:
        rows.append(("(other)", None, other))
    return rows


def _measurements(evidence: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The evidence that is not an expert's score (``snr``, ``sharpness``, ``flags``, ...)."""
    return [(k, v) for k, v in sorted(evidence.items()) if not k.startswith("ev_")]


def _png_cutouts(cutouts: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(label, digest)`` of the PNG cutouts, lowest zoom first."""
    pngs = [(name, digest) for name, digest in cutouts.items() if name.startswith("png")]

    def zoom(pair: tuple[str, str]) -> tuple[float, str]:
        digits = re.findall(r"\d+(?:\.\d+)?", pair[0])
        return (float(digits[-1]) if digits else 0.0, pair[0])

    out = []
    for name, digest in sorted(pngs, key=zoom):
        match = re.fullmatch(r"png_?zoom(\d+)", name)
        label = f"zoom \u00d7{match.group(1)}" if match else name.replace("_", " ")
        out.append((label, digest))
    return out
