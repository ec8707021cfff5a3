"""GET /: the lane's status for store IT, in the lane's language (right-to-left for Persian).

Built from the same dictionary as /v1/health (posd/health.py), so the page and
the API never disagree: the badge is green when everything works, amber as
soon as central is unreachable or a device is in error, red when sales cannot
be recorded or slips cannot print. States, reasons and problems are
translated; times are the lane's local time (Jalali for Persian). No PII, no
token: it is what a person standing at the till may see.
"""

from __future__ import annotations

from html import escape
from typing import Any

from posd.core.messages import (
    RTL_LOCALES,
    describe_issue,
    format_duration,
    format_local_time,
    format_number,
    format_size,
    has_message,
    message,
)

COLOURS = {"ok": "#1b7f3b", "degraded": "#b7791f", "error": "#c53030"}  # green, amber, red
REFRESH_S = 3


def render_status(health: dict[str, Any], locale: str | None = None) -> str:
    locale = locale or health.get("locale") or "en"
    tz = health.get("timezone") or "UTC"
    m = lambda key, **kw: escape(message(locale, key, **kw))  # noqa: E731
    word = lambda prefix, value: escape(  # noqa: E731
        message(locale, f"{prefix}.{value}") if value and has_message(locale, f"{prefix}.{value}") else value or "")
    when = lambda iso: escape(format_local_time(locale, iso, tz) or message(locale, "status.never"))  # noqa: E731
    num = lambda value: escape(format_number(locale, int(value)) if value is not None else "-")  # noqa: E731
    status = health.get("status", "error")
    sync, cache, storage = health.get("sync", {}), health.get("cache", {}), health.get("storage", {})
    issues = health.get("issues")
    if issues is None:  # a health answer without structured issues: its English problems as they are
        texts = [escape(p) for p in health.get("problems", [])]
    else:
        texts = [escape(describe_issue(locale, i)) for i in issues]
    problems = "".join(f"<li>{t}</li>" for t in texts) or f"<li>{m('status.none')}</li>"
    devices = "".join(_device_row(d, word, when) for d in health.get("devices", []))
    rows = lambda pairs: "".join(f'<tr id="row-{k}"><th>{m("status." + k)}</th><td>{v}</td></tr>'  # noqa: E731
                                 for k, v in pairs)
    skew = sync.get("clock_skew_s")
    last_error = sync.get("last_error") or (sync.get("pull") or {}).get("last_error")  # a push's, else a pull's
    sync_rows = rows([
        ("state", m("status.auth_failed") if "auth_failed" in (sync.get("state"), (sync.get("pull") or {}).get("state"))
         else m("status.online") if sync.get("online") else m("status.offline")),
        ("last_error", f'<code dir="ltr">{escape(last_error)}</code>' if last_error else m("status.none")),
        ("pending", num(sync.get("pending"))),
        ("oldest", escape(format_duration(locale, sync.get("oldest_pending_age_s")) or "-")),
        ("quarantined", num(sync.get("quarantined"))),
        ("token_replays", num(sync.get("token_replays_flagged", 0))),
        ("birthday_repeats", num(sync.get("birthday_repeats_flagged", 0))),
        ("last_success", when(sync.get("last_sync_at") or sync.get("last_success_at"))),
        ("clock_skew", escape(format_duration(locale, abs(skew)) or "-") if skew is not None else "-"),
    ])
    cache_rows = rows([
        ("members", num(cache.get("members"))),
        ("program", escape(str(cache.get("program_version") or "-"))),
        ("synced", when(cache.get("members_synced_at"))
         + (f" ({m('status.stale')})" if cache.get("stale") else "")),
        ("last_sale", when(health.get("last_sale_at"))),
        ("storage", escape(format_size(locale, storage["free_mb"] * 2**20) or "-")
         if storage.get("free_mb") is not None else "-"),
    ])
    direction = "rtl" if locale in RTL_LOCALES else "ltr"
    started = when(health.get("started_at")) if health.get("started_at") else \
        escape(format_number(locale, int(health.get("uptime_s", 0))))
    header = "".join(f"<th>{m('status.' + k)}</th>" for k in
                     ("device", "kind", "url", "state", "reason", "since", "last_error", "paper"))
    return f"""<!doctype html>
<html lang="{escape(locale)}" dir="{direction}"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_S}"><title>{m('status.title')}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:64em}}
#badge{{color:#fff;background:{COLOURS.get(status, COLOURS['error'])};padding:.1em .5em;border-radius:.3em}}
table{{border-collapse:collapse;margin-bottom:1em}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:start}}
code{{font-size:.9em}}</style>
</head><body>
<h1>{m('status.title')} <span id="badge" data-status="{escape(status)}">{m('status.' + status)}</span></h1>
<p>{m('status.lane', store=health.get('store_id', ''), lane=health.get('lane_id', ''))}</p>
<h2>{m('status.problems')}</h2><ul id="problems">{problems}</ul>
<h2>{m('status.devices')}</h2>
<table id="devices"><tr>{header}</tr>{devices}</table>
<h2>{m('status.sync')}</h2><table id="sync">{sync_rows}</table>
<h2>{m('status.cache')}</h2><table id="cache">{cache_rows}</table>
<p><small>{m('status.version', version=health.get('version', ''), started=started)}</small></p>
</body></html>"""


def _device_row(d: dict[str, Any], word: Any, when: Any) -> str:
    last = d.get("last_error")
    last_error = f"{word('reason', last['reason'])} ({when(last['at'])})" if last else ""
    cells = [
        escape(d["name"]), word("kind", d["kind"]), f'<code dir="ltr">{escape(d.get("url") or "")}</code>',
        word("state", d["state"]), word("reason", d.get("reason")), when(d["since"]) if d.get("since") else "",
        last_error, word("paper", d.get("paper")),
    ]
    return f'<tr data-device="{escape(d["name"])}" data-state="{escape(d["state"])}">' + \
        "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
