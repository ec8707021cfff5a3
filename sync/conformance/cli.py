"""``posd conformance``: run the protocol's checks against a central; a table (or JSON).

Exit 0: conformant; 1: not conformant (a check failed or was skipped); 2: the kit could not judge the
central (bad arguments, central unreachable, the kit's credentials refused: preflight.py).

    posd conformance --central https://central.example/api --store S900 --lane CONF1 --secret-file s.txt
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from posd.sync.conformance.http import KitClient
from posd.sync.conformance.kit import GROUPS, SETTLE_S, Context, as_json, passed, run, table
from posd.sync.conformance.preflight import SetupError, preflight
from posd.sync.protocol import LANE_ID_RE, never_spent, secret_from_text


def _number(kind: type, *, least: float, strictly: bool) -> Callable[[str], float]:
    """An argparse type: a finite number of ``kind`` above ``least`` (or at least it): a timeout of 0
    reached the HTTP library as a traceback, 0 pages judged a conforming central not conformant."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number")
        if value < least or (strictly and value == least):
            raise argparse.ArgumentTypeError(f"{text} must be {'above' if strictly else 'at least'} {least:g}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posd conformance",
                                     description="Check a central against the posd sync protocol. It pushes events "
                                                 "and enrols members: use a test store and lane.")
    parser.add_argument("--central", required=True, help="the central's base URL, http(s)://host[:port][/prefix]")
    parser.add_argument("--store", required=True, help="a store central knows, and whose secret you hold")
    parser.add_argument("--lane", required=True, help="a lane id for the kit's events (its history is continued)")
    parser.add_argument("--secret-file", required=True, help="the store secret, as in a lane's config (hex:... or text)")
    parser.add_argument("--currency", default=None, help="currency of the kit's points (default: the program's "
                                                         "tier_currency unless it is never spent (kind "
                                                         "qualifying), else its first currency that is spent, "
                                                         "else 'points')")
    parser.add_argument("--group", action="append", choices=GROUPS, help="only these groups (repeatable)")
    parser.add_argument("--max-pages", type=_number(int, least=1, strictly=False), default=10_000,
                        help="pages of 1000 members read to reach the feed's end")
    parser.add_argument("--wait-expiry", type=_number(float, least=0, strictly=False), default=30.0,
                        metavar="SECONDS", help="wait this long at most for a burn reservation to expire (else: not observed)")
    parser.add_argument("--settle", type=_number(float, least=0, strictly=False), default=SETTLE_S, metavar="SECONDS",
                        help=f"wait this long at most for a change central accepted to show in its member feed "
                             f"(default {SETTLE_S:g}; raise it for a feed that lags its pushes)")
    parser.add_argument("--ca-file", help="CA bundle for central's certificate (default: the system's)")
    parser.add_argument("--timeout", type=_number(float, least=0, strictly=True), default=30.0,
                        help="seconds per request")
    parser.add_argument("--json", action="store_true", help="the results as JSON")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not LANE_ID_RE.match(args.lane):
            raise ValueError("--lane must be 1-64 of A-Z a-z 0-9 . _ -")
        secret = secret_from_text(Path(args.secret_file).read_text(encoding="utf-8").strip())
        client = KitClient(args.central, args.store, args.lane, secret, timeout=args.timeout,
                           verify=args.ca_file or True)
    except (OSError, ValueError) as exc:
        print(f"posd conformance: {exc}", file=sys.stderr)
        return 2
    try:
        preflight(client)
    except SetupError as exc:
        client.close()
        return _setup_failed(exc, args)
    groups = tuple(args.group) if args.group else GROUPS
    try:
        currency = _currency(client, args.currency, burns="burn" in groups)
    except SetupError as exc:
        client.close()
        return _setup_failed(exc, args)
    try:
        ctx = Context(client, currency=currency, max_pages=args.max_pages, wait_expiry=args.wait_expiry,
                      settle_s=args.settle)
        outcomes = run(ctx, groups)
    finally:
        client.close()
    print(as_json(outcomes, args.central) if args.json else table(outcomes, args.central))
    return 0 if passed(outcomes) else 1


def _setup_failed(exc: SetupError, args: argparse.Namespace) -> int:
    """One clear message instead of a table of failures the central did not cause; exit 2."""
    print(f"posd conformance: {exc.what}", file=sys.stderr)
    print(f"  -> {exc.check}", file=sys.stderr)
    if exc.detail:
        print(f"  ({exc.detail})", file=sys.stderr)
    print("  no check was run: this is the kit's setup, not the central's conformance", file=sys.stderr)
    if args.json:
        print(json.dumps({"central": args.central, "conformant": None, "checks": [],
                          "setup_error": {"what": exc.what, "check": exc.check, "detail": exc.detail}}, indent=2))
    return 2


def _currency(client: KitClient, given: str | None, *, burns: bool) -> str:
    """The currency the kit credits (and, with ``burns``, spends): ``given``, checked against central's
    program, else the program's (_program_currency). A SetupError when the kit's own choice would make
    central refuse it: a currency the program lacks (every push bad_points, seqs used up in the
    platform's test lane), or tier points to burn (never spent: every burn refused)."""
    try:
        program = client.program().json()
    except Exception:  # the program check reports what is wrong with it
        return given or "points"
    codes = [c.get("code") for c in (program.get("currencies") or []) if isinstance(c, dict)] \
        if isinstance(program, dict) else []
    spendable = _spendable(program)
    if given is not None and codes and given not in codes:
        offered = spendable if burns and spendable else codes
        raise SetupError(f"--currency {given!r} is not a currency of central's program",
                         f"use one of {', '.join(map(str, offered))}")
    currency = given if given is not None else _program_currency(program)
    if burns and currency in never_spent(program):
        raise SetupError(f"{'--currency ' if given else 'the program currency '}{currency!r} is tier points "
                         "(kind qualifying), which are never spent, and the burn checks spend the kit's points",
                         f"use --currency {' or '.join(spendable)}" if spendable else
                         "central's program has no currency a burn may spend: leave out --group burn")
    return currency


def _spendable(program: Any) -> list[str]:
    """The program's currencies a burn may spend: its tier currency first, then in the program's order."""
    if not isinstance(program, dict):
        return []
    codes = [c["code"] for c in program.get("currencies") or [] if isinstance(c, dict) and isinstance(c.get("code"), str)]
    tier = program.get("tier_currency")
    ordered = ([tier] if isinstance(tier, str) and tier in codes else []) + codes
    never = never_spent(program)
    return list(dict.fromkeys(c for c in ordered if c not in never))


def _program_currency(program: Any) -> str:
    """The program's tier currency unless it is never spent, else its first currency that is spent;
    tier points when it has no other; else "points"."""
    if isinstance(program, dict) and isinstance(program.get("tier_currency"), str) \
            and not program.get("currencies"):
        return program["tier_currency"]
    spendable = _spendable(program)
    if spendable:
        return spendable[0]
    tier = program.get("tier_currency") if isinstance(program, dict) else None
    return tier if isinstance(tier, str) else next(iter(sorted(never_spent(program))), "points")