"""``moe-imaging review``: the review queue from the command line.

::

    moe-imaging review list   [--status S] [--exposure E] [--kind K] [--reason TEXT] [--limit N] [--json]
    moe-imaging review stats  [--json]
    moe-imaging review export LABELS.parquet
    moe-imaging review add-reviewer NAME [--admin] [--password-stdin | --prompt] [--replace]
    moe-imaging review enqueue CATALOG --exposure NAME [--catalog-id ID] [--image FITS] [--mode M]
    moe-imaging review serve  [--host 127.0.0.1] [--port 8000]

Every command takes ``--db URL`` (else ``$MOE_REVIEW_DB``, else the
configuration's ``url`` or ``path``, by default ``.moe-imaging/review.sqlite``)
and ``--config review.toml`` (:func:`review.config.load_review_config`).
Expected faults print one line, ``moe-imaging: error: ...``, and exit with 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from contracts.vocabulary import MODES

from .config import ReviewConfig, load_review_config
from .errors import ReviewError
from .models import ITEM_STATUSES

__all__ = ["DB_ENV", "register"]

DB_ENV = "MOE_REVIEW_DB"
"""Environment variable with the review database URL (overridden by ``--db``)."""


def register(subparsers: Any) -> None:
    """Add ``review`` and its sub-commands to the ``moe-imaging`` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=None,
                        help=f"database URL: sqlite:///FILE or postgresql+psycopg://USER@HOST/DB "
                             f"(default: ${DB_ENV}, else the configuration, else .moe-imaging/review.sqlite)")
    common.add_argument("--config", default=None, help="review configuration (TOML)")

    rv = subparsers.add_parser("review", help="the expert-review queue: list, stats, export labels, accounts, web app")
    sub = rv.add_subparsers(dest="review_command", required=True)

    ls = sub.add_parser("list", parents=[common], help="list queued items (highest priority first)")
    ls.add_argument("--status", choices=ITEM_STATUSES, default=None)
    ls.add_argument("--exposure", default=None, help="only this exposure")
    ls.add_argument("--kind", default=None, help="only this gate kind")
    ls.add_argument("--reason", default=None, help="only items whose review reason contains this text")
    ls.add_argument("--limit", type=int, default=50, help="rows to show (default 50)")
    ls.add_argument("--offset", type=int, default=0)
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=_cmd_list)

    st = sub.add_parser("stats", parents=[common], help="backlog, decisions, throughput, agreement")
    st.add_argument("--json", action="store_true", help="as JSON")
    st.set_defaults(func=_cmd_stats)

    ex = sub.add_parser("export", parents=[common],
                        help="write the consensus labels as Parquet (for 'moe-imaging calibrate --labels')")
    ex.add_argument("out", help="label file, .parquet")
    ex.set_defaults(func=_cmd_export)

    ad = sub.add_parser("add-reviewer", parents=[common],
                        help="create a reviewer account; prints its API token once")
    ad.add_argument("name", help="letters, digits and _.@+-")
    pw = ad.add_mutually_exclusive_group()
    pw.add_argument("--password-stdin", action="store_true", help="read the web password from the first line of stdin")
    pw.add_argument("--prompt", action="store_true", help="ask for the web password (not echoed)")
    ad.add_argument("--admin", action="store_true", help="an administrator")
    ad.add_argument("--replace", action="store_true", help="reset an existing account's password and token")
    ad.set_defaults(func=_cmd_add_reviewer)

    en = sub.add_parser("enqueue", parents=[common],
                        help="queue a catalog's rows with decision 'review' (idempotent)")
    en.add_argument("catalog", help="catalog file (.parquet, .fits, .ecsv) with the gate's columns")
    en.add_argument("--exposure", default=None, help="exposure name (default: the catalog's input file name)")
    en.add_argument("--catalog-id", default=None, help="the catalog's unique id (default: the catalog file name)")
    en.add_argument("--image", default=None, help="the image (FITS) to cut stamps from")
    en.add_argument("--hdu", default=None, help="image HDU index or name (default: the first 2-D image)")
    en.add_argument("--mode", choices=MODES, default="survey")
    en.add_argument("--all", action="store_true", help="queue every row, not only decision == 'review'")
    en.set_defaults(func=_cmd_enqueue)

    sv = sub.add_parser("serve", parents=[common], help="run the reviewers' web app (uvicorn)")
    sv.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    sv.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    sv.set_defaults(func=_cmd_serve)


# ------------------------------------------------------------------ helpers


def _config(args: argparse.Namespace) -> ReviewConfig:
    return load_review_config(args.config)


def _open(args: argparse.Namespace, config: ReviewConfig | None = None):
    from .store import ReviewStore

    config = config if config is not None else _config(args)
    url = args.db or os.environ.get(DB_ENV) or None
    return ReviewStore(url, config=config)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _short(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


# ------------------------------------------------------------------ commands


def _cmd_list(args: argparse.Namespace) -> int:
    import dataclasses

    with _open(args) as store:
        items = store.list_items(status=args.status, exposure=args.exposure, kind=args.kind, reason=args.reason,
                                 limit=args.limit, offset=args.offset)
        total = store.count_items(status=args.status, exposure=args.exposure, kind=args.kind, reason=args.reason)
    if args.json:
        for item in items:
            d = dataclasses.asdict(item)
            print(json.dumps(_jsonable(d), sort_keys=True))
        return 0
    header = f"{'id':>7}  {'status':<8} {'kind':<8} {'prio':>6} {'done':>4}  {'lease':<12} {'exposure':<20} " \
             f"{'source':>10} {'x':>8} {'y':>8}  reason"
    print(header)
    for i in items:
        print(f"{i.id:>7}  {i.status:<8} {i.kind:<8} {i.priority:6.3f} {i.n_decisions:>2}/{i.required:<1}  "
              f"{_short(i.lease_owner or '-', 12):<12} {_short(i.exposure, 20):<20} {i.source_id:>10} "
              f"{i.x:8.1f} {i.y:8.1f}  {_short(i.label and f'[{i.label}] ' + i.reason or i.reason, 50)}")
    shown = f"{args.offset + 1}-{args.offset + len(items)}" if items else "none"
    print(f"{store.url}: {total} item(s) match; showing {shown}")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    with _open(args) as store:
        stats = store.stats()
    if args.json:
        print(json.dumps(_jsonable(stats), indent=2, sort_keys=True))
        return 0
    by = stats["by_status"]
    agree = stats["agreement"]
    lines = [
        (f"store: {store.url} (reviews per item: "
         f"{', '.join(map(str, stats['required_per_item'])) or stats['required_reviews']}; "
         f"new items k = {stats['required_reviews']}, consensus {stats['consensus']})"),
        f"items: {stats['items']}  pending {by['pending']}  decided {by['decided']}  disputed {by['disputed']}",
        "pending by kind: " + (", ".join(f"{k or '?'} {n}" for k, n in sorted(stats["pending_by_kind"].items()))
                               or "none"),
        (f"decisions: {stats['decisions']} (undone {stats['undone']}); "
         f"last hour {stats['throughput']['last_hour']}, last day {stats['throughput']['last_day']}"),
        "by reviewer: " + (", ".join(f"{r} {n}" for r, n in stats["by_reviewer"].items()) or "none"),
        "labels: " + (", ".join(f"{k} {n}" for k, n in sorted(stats["labels"].items())) or "none"),
        (f"agreement: mean {agree['mean']:.3f}, unanimous {agree['unanimous_fraction']:.1%} of {agree['items']}"
         if agree["items"] else "agreement: no item decided yet"),
        f"leases: {stats['active_leases']} active, {stats['expired_leases']} expired (returned at the next claim)",
    ]
    if stats["oldest_pending"] is not None:
        lines.append(f"oldest pending: {stats['oldest_pending'].isoformat(timespec='seconds')}")
    print("\n".join(lines))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .labels import read_labels

    with _open(args) as store:
        path = store.export_labels(args.out)
    n = len(read_labels(path))
    print(f"wrote {n} label(s) to {path}")
    return 0


def _read_password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise ReviewError("add-reviewer: --password-stdin read an empty password")
        return password
    if args.prompt:
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise ReviewError("add-reviewer: the passwords do not match")
        return first
    return None


def _cmd_add_reviewer(args: argparse.Namespace) -> int:
    password = _read_password(args)
    with _open(args) as store:
        token = store.add_reviewer(args.name, password, admin=args.admin, replace=args.replace)
    what = "updated" if args.replace else "created"
    login = "password and token" if password is not None else "token only"
    print(f"reviewer {args.name!r} {what} ({'admin, ' if args.admin else ''}{login}); API token, shown once:")
    print(token)
    return 0


def _cmd_enqueue(args: argparse.Namespace) -> int:
    from catalogs import read_catalog

    catalog = read_catalog(args.catalog)
    prov = catalog.meta.get("provenance") or {}
    exposure = args.exposure or Path(str(prov.get("input_path") or args.catalog)).name
    catalog_id = args.catalog_id or Path(args.catalog).name
    image = wcs = None
    if args.image is not None:
        image, wcs = _read_image(args.image, args.hdu)
    decisions: tuple[str, ...] = ("review",)
    if args.all and "decision" in catalog.colnames:
        decisions = tuple(sorted({str(d) for d in catalog["decision"]}))
    with _open(args) as store:
        result = store.enqueue(catalog, exposure=exposure, catalog_id=catalog_id, image=image, wcs=wcs,
                               mode=args.mode, decisions=decisions)
        pending = store.pending_count()
    print(f"{args.catalog}: {result.added} item(s) added, {result.existing} already queued, "
          f"{result.skipped} not for review; {pending} pending in {store.url}")
    return 0


def _read_image(path: str, hdu: str | None):
    import warnings

    import numpy as np
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    from contracts.errors import InputError

    try:
        hdul = fits.open(path, memmap=True)
    except FileNotFoundError:
        raise InputError(path, "no such image file") from None
    except OSError as exc:
        raise InputError(path, f"not a readable FITS file ({exc})") from None
    with hdul:
        if hdu is not None:
            key: int | str = int(hdu) if hdu.lstrip("-").isdigit() else hdu
            try:
                chosen = hdul[key]
            except (KeyError, IndexError):
                raise InputError(path, f"no HDU {hdu!r}") from None
        else:
            chosen = next((h for h in hdul if getattr(h, "data", None) is not None and h.data.ndim == 2), None)
            if chosen is None:
                raise InputError(path, "no 2-D image HDU")
        data = np.asarray(chosen.data, dtype=np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(chosen.header)
    return data, (wcs if wcs.has_celestial else None)


def _cmd_serve(args: argparse.Namespace) -> int:
    from review.web.app import serve

    url = args.db or os.environ.get(DB_ENV) or None
    serve(args.host, args.port, url, store_config=_config(args), log_level=args.log_level)
    return 0
