"""posd doctor: what the lane's own files and the running daemon say: sync, cache, health."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from posd import __version__
from posd.core.messages import describe_issue, format_duration, format_number
from posd.core.program import parse_program
from posd.core.rules import earned_on
from posd.doctor import Context, Finding
from posd.storage.db import parse_iso
from posd.storage.inspect import cache_stats

BACKLOG_WARN_S = 600.0  # as health: events older than this waiting for central
STALE_S = 24 * 3600.0  # as health: members older than this are out of date
# Amber in health (sales are still recorded) but sync has stopped until a person acts: a failure here.
NEEDS_A_PERSON = frozenset({"identity_conflict", "central_auth_failed"})


def health_url(ctx: Context) -> str:
    api = ctx.config.api
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(api.host, api.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{api.port}/v1/health"


def fetch_health(ctx: Context) -> str | None:
    """The running daemon's /v1/health into ctx.health; why not, when it does not answer."""
    try:
        with urllib.request.urlopen(health_url(ctx), timeout=3) as resp:
            health = json.load(resp)
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None)
        return str(getattr(reason, "strerror", None) or reason or exc)
    lane = ctx.config.lane
    seen = (health.get("store_id"), health.get("lane_id")) if isinstance(health, dict) else (None, None)
    if seen != (None, None) and seen != (lane.store_id, lane.lane_id):
        # Another lane's posd on this port: what it reports (its devices, its issues) is not this lane's.
        ctx.foreign = health
        return "other lane"
    ctx.health = health
    return None


def sync_and_cache(ctx: Context) -> list[Finding]:
    out = []
    stats = ctx.ledger_stats
    if stats is None:
        out.append(Finding("sync", "sync.outbox", "skip", "skipped", {"what": ctx.tr("doctor.area.sync"),
                                                                       "reason": "ledger.db"}))
    else:
        age = (datetime.now(UTC) - stats.oldest_pending_at).total_seconds() if stats.oldest_pending_at else None
        params = {"pending": stats.pending, "quarantined": stats.quarantined, "age_s": age,
                  "age": format_duration(ctx.locale, age) or "-",
                  "oldest": f" ({format_duration(ctx.locale, age)})" if age is not None else ""}
        lane = ctx.config.lane
        if stats.sync_lane_id and stats.sync_lane_id != lane.lane_id:
            # Taken when central already held another history under the configured id: a ledger.db lost
            # (expected, nothing to do) or another till set up with the same lane id (to correct).
            out.append(Finding("sync", "sync.identity", "warn", "identity_moved",
                               {"sync_lane": stats.sync_lane_id, "lane": lane.lane_id, "store": lane.store_id}))
        if stats.quarantined_open:  # acknowledged ones are store IT's business done (posd ledger quarantine)
            out.append(Finding("sync", "sync.quarantined", "warn", "quarantined",
                               {**params, "quarantined": stats.quarantined_open}))
        if age is not None and age > BACKLOG_WARN_S:
            out.append(Finding("sync", "sync.outbox", "warn", "backlog", params))
        else:
            out.append(Finding("sync", "sync.outbox", "ok", "ok", params))
    out += _cache(ctx)
    return out


def _cache(ctx: Context) -> list[Finding]:
    db = ctx.cache
    if db is None or not db.exists or db.problem or db.unreadable:
        return [Finding("cache", "cache.members", "skip", "skipped", {"what": ctx.tr("doctor.area.cache"),
                                                                      "reason": "cache.db"})]
    try:
        stats = cache_stats(db.path)
    except Exception as exc:
        return [Finding("cache", "cache.members", "skip", "skipped", {"what": ctx.tr("doctor.area.cache"),
                                                                      "reason": f"cache.db: {exc}"})]
    age = (datetime.now(UTC) - parse_iso(stats.members_synced_at)).total_seconds() if stats.members_synced_at else None
    params = {"members": format_number(ctx.locale, stats.members), "count": stats.members,
              "version": stats.program_version or "-", "age": format_duration(ctx.locale, age) or "-", "age_s": age}
    out = []
    if stats.program_version is None:
        out.append(Finding("cache", "cache.program", "fail", "no_program", params))
    elif (earned := _earned_on(stats.program_body)) is not None and ctx.config.lane.currency not in earned:
        out.append(Finding("cache", "cache.currency", "warn", "currency",
                           {**params, "currency": ctx.config.lane.currency, "earned": ", ".join(earned) or "-"}))
    if not stats.members:
        out.append(Finding("cache", "cache.members", "warn", "empty", params))
    elif age is None or age > STALE_S:
        out.append(Finding("cache", "cache.members", "warn", "stale", params))
    else:
        out.append(Finding("cache", "cache.members", "ok", "ok", params))
    return out


def _earned_on(body: str | None) -> list[str] | None:
    """The money currencies the cached program earns on; None when it cannot be read."""
    try:
        return earned_on(parse_program(json.loads(body))) if body else None
    except (ValueError, TypeError, KeyError):
        return None


def daemon(ctx: Context) -> list[Finding]:
    url = health_url(ctx).removesuffix("/v1/health")
    if ctx.foreign is not None:
        lane = ctx.config.lane
        return [Finding("daemon", "daemon.running", "fail", "other_lane",
                        {"url": url, "store": ctx.foreign.get("store_id"), "lane": ctx.foreign.get("lane_id"),
                         "our_store": lane.store_id, "our_lane": lane.lane_id})]
    if ctx.health is None:
        return [Finding("daemon", "daemon.running", "fail", "down", {"url": url, "message": ctx.health_error})]
    h: dict[str, Any] = ctx.health
    status = ctx.tr(f"status.{h.get('status')}") if h.get("status") in ("ok", "degraded", "error") else "?"
    out = [Finding("daemon", "daemon.running", "ok", "ok",
                   {"url": url, "version": h.get("version"), "status": status, "health": h.get("status"),
                    "uptime": format_duration(ctx.locale, h.get("uptime_s")), "uptime_s": h.get("uptime_s")})]
    if h.get("version") != __version__:
        out.append(Finding("daemon", "daemon.version", "warn", "version",
                           {"running": h.get("version"), "installed": __version__}))
    for issue in h.get("issues", []):
        fails = issue.get("severity") == "error" or issue.get("code") in NEEDS_A_PERSON
        out.append(Finding("daemon", f"daemon.{issue.get('code')}", "fail" if fails else "warn", "issue", {"text": describe_issue(ctx.locale, issue),
                                                  "issue": issue.get("code"), "subject": issue.get("subject")}))
    return out
