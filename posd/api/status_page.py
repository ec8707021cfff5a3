"""GET /: the lane's status for store IT, in the lane's language (right-to-left for Persian).

Built from the same dictionary as /v1/health, so the page and the API never
disagree. No PII, no token: it is what a person standing at the till may see.
"""

from __future__ import annotations

from html import escape
from typing import Any

from posd.core.messages import RTL_LOCALES, localize_digits, message

_COLOURS = {"ok": "#1b7f3b", "degraded": "#b7791f", "error": "#c53030"}


def render_status(health: dict[str, Any], locale: str) -> str:
    m = lambda key, **kw: escape(message(locale, key, **kw))  # noqa: E731
    n = lambda value: escape(localize_digits(str(value if value is not None else "-"), locale))  # noqa: E731
    status = health.get("status", "error")
    sync, cache = health.get("sync", {}), health.get("cache", {})
    problems = "".join(f"<li>{escape(p)}</li>" for p in health.get("problems", [])) or f"<li>{m('status.none')}</li>"
    devices = "".join(
        f"<tr><td>{escape(d['name'])}</td><td>{escape(d['kind'])}</td><td>{escape(d['state'])}</td>"
        f"<td>{escape(d.get('reason') or '')}</td></tr>" for d in health.get("devices", []))
    rows = lambda pairs: "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in pairs)  # noqa: E731
    sync_rows = rows([
        (m("status.state"), m("status.online") if sync.get("online") else m("status.offline")),
        (m("status.pending"), n(sync.get("pending"))),
        (m("status.oldest"), n(sync.get("oldest_pending_age_s"))),
        (m("status.quarantined"), n(sync.get("quarantined"))),
        (m("status.last_success"), escape(str(sync.get("last_success_at") or "-"))),
    ])
    cache_rows = rows([
        (m("status.members"), n(cache.get("members"))),
        (m("status.program"), escape(str(cache.get("program_version") or "-"))),
        (m("status.synced"), escape(str(cache.get("members_synced_at") or "-"))
         + (f" ({m('status.stale')})" if cache.get("stale") else "")),
    ])
    direction = "rtl" if locale in RTL_LOCALES else "ltr"
    return f"""<!doctype html>
<html lang="{escape(locale)}" dir="{direction}"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="5"><title>{m('status.title')}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:48em}}
h1 span{{color:#fff;background:{_COLOURS.get(status, '#c53030')};padding:.1em .5em;border-radius:.3em}}
table{{border-collapse:collapse;margin-bottom:1em}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:start}}</style>
</head><body>
<h1>{m('status.title')} <span>{m('status.' + status)}</span></h1>
<p>{m('status.lane', store=health.get('store_id', ''), lane=health.get('lane_id', ''))}</p>
<h2>{m('status.problems')}</h2><ul>{problems}</ul>
<h2>{m('status.devices')}</h2>
<table><tr><th>{m('status.device')}</th><th></th><th>{m('status.state')}</th><th>{m('status.reason')}</th></tr>{devices}</table>
<h2>{m('status.sync')}</h2><table>{sync_rows}</table>
<h2>{m('status.cache')}</h2><table>{cache_rows}</table>
<p><small>{m('status.version', version=health.get('version', ''), uptime=n(int(health.get('uptime_s', 0))))}</small></p>
</body></html>"""
