"""The lane's health: one dictionary behind /v1/health, the status page, /metrics and systemd's STATUS=.

What a person must see at once decides the colour:

- ``error`` (red): sales cannot be recorded (no program, ledger.db cannot be
  written) or slips cannot print (the printer is in error, the print worker
  stopped);
- ``degraded`` (amber): the lane sells and prints, but something needs a look:
  central unreachable or refusing us, any other device in error, paper
  running low, members out of date, events refused or waiting long, the
  storage disk nearly full;
- ``ok`` (green) otherwise.

Each finding is an ``issue`` with a stable ``code`` (translated by the status
page), its ``severity``, the device or worker it is about and the reason;
``problems`` says the same in English for logs and scripts.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from posd import __version__
from posd.core.rules_eval import compiled
from posd.storage.db import ReadFailed, database_size
from posd.sync.lane.ports import OutboxStats

ERROR, WARNING = "error", "warning"
BACKLOG_WARN_S = 600.0  # events older than this waiting for central: amber
PAPER = {"paper_out": "out", "paper_near_end": "near_end"}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class DeviceRecord:
    """A device as the last status it reported, when that started, and its last error."""

    name: str
    kind: str
    url: str
    state: str
    reason: str | None
    since: str
    last_error: dict[str, str] | None = None


@dataclass
class DeviceBoard:
    """Every device's latest status, fed from the drivers' threads (``update``), read by health."""

    devices: dict[str, DeviceRecord] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, name: str, kind: str, url: str, state: str, reason: str | None) -> bool:
        """Record a status; True when it is a change (first report included)."""
        at = now_iso()
        with self._lock:
            old = self.devices.get(name)
            if old is not None and (old.state, old.reason, old.url) == (state, reason, url):
                return False
            last_error = old.last_error if old else None
            if state == "error":
                last_error = {"reason": reason or "error", "at": at}
            self.devices[name] = DeviceRecord(name, kind, url, state, reason, at, last_error)
            return True

    def snapshot(self) -> list[DeviceRecord]:
        with self._lock:
            return list(self.devices.values())


def paper_state(last_status: Any, reason: str | None) -> str | None:
    """ok | near_end | out for a printer that reports its paper (DLE EOT), else None."""
    if reason in PAPER:
        return PAPER[reason]
    if reason in ("offline", "io_error"):
        return None  # nothing answers now: the last answer's paper is not today's
    if last_status is None or not getattr(last_status, "answered", False):
        return None
    if last_status.paper_out:
        return "out"
    return "near_end" if last_status.paper_near_end else "ok"


def issue(code: str, severity: str, subject: str | None = None, reason: str | None = None,
          detail: str | None = None, **values: Any) -> dict[str, Any]:
    return {"code": code, "severity": severity, "subject": subject, "reason": reason, "detail": detail,
            "values": values}


def assess_devices(devices: list[dict[str, Any]], printer: str | None) -> list[dict[str, Any]]:
    """A printer in error means slips cannot print (red); any other device in error is amber."""
    found = []
    for d in devices:
        if d["state"] == "error":
            found.append(issue("device_error", ERROR if d["name"] == printer else WARNING, d["name"],
                               d["reason"] or "error", kind=d["kind"]))
        elif d["reason"] == "paper_near_end":
            found.append(issue("paper_near_end", WARNING, d["name"], d["reason"], kind=d["kind"]))
    return found


QUARANTINED_SHOWN = 10  # the newest quarantined events health lists (`posd ledger quarantine` lists all)


def assess_sync(relay: dict[str, Any], pull: dict[str, Any], pending: int, oldest_s: float | None,
                quarantined: int) -> list[dict[str, Any]]:
    found = []
    states = (relay.get("state"), pull.get("state"))
    if "auth_failed" in states:
        found.append(issue("central_auth_failed", WARNING, detail=relay.get("last_error") or pull.get("last_error")))
    elif "identity_conflict" in states:
        found.append(issue("identity_conflict", WARNING, detail=relay.get("last_error")))
    else:
        failing = [w for w in (relay, pull) if w.get("consecutive_failures", 0) > 0]
        if failing:
            # Central answering 500s is not a network to check: say which one it is.
            code = "central_error" if failing[0].get("central_answered") else "central_unreachable"
            found.append(issue(code, WARNING, detail=failing[0].get("last_error")))
    if pull.get("program_refused"):
        found.append(issue("program_refused", WARNING, detail=pull["program_refused"]["error"],
                           version=pull["program_refused"]["version"]))
    if quarantined:
        found.append(issue("quarantined", WARNING, count=quarantined))
    if oldest_s is not None and oldest_s > BACKLOG_WARN_S:
        found.append(issue("sync_backlog", WARNING, count=pending, age_s=round(oldest_s)))
    return found


def problem_text(i: dict[str, Any]) -> str:
    """An issue in English, for /v1/health's ``problems``, logs and STATUS=."""
    v, code = i["values"], i["code"]
    if code == "device_error":
        return f"{i['subject']}: {i['reason']}"
    if code == "paper_near_end":
        return f"{i['subject']}: paper near its end"
    text = {
        "program_missing": "no loyalty program yet: sales cannot be recorded",
        "currency_not_earned": f"the program {v.get('version')} earns on {v.get('earned')}, not on this lane's "
                               f"{v.get('currency')}: sales in it cannot be recorded",
        "ledger_unwritable": f"ledger.db cannot be written ({i['detail']}): sales cannot be recorded",
        "print_worker_stopped": "print worker stopped: slips cannot print",
        "central_unreachable": f"central unreachable ({i['detail']})",
        "central_error": f"central answers with an error ({i['detail']}); sales are kept and sent later",
        "central_auth_failed": "central refused our credentials",
        "identity_conflict": "central holds another history for this lane; sync stopped (ledger.db restored?)",
        "program_refused": f"central's program {v.get('version')} refused, the one in force stays: {i['detail']}",
        "quarantined": f"{v.get('count')} event(s) refused by central (quarantined)",
        "sync_backlog": f"{v.get('count')} event(s) waiting for central, the oldest for {v.get('age_s')} s",
        "cache_stale": "members not refreshed from central for over a day" if v.get("age_s") is not None
        else "members never loaded from central",
        "disk_low": f"{v.get('free_mb')} MB free on the storage disk (minimum {v.get('min_free_mb')} MB)",
    }.get(code)
    return text or code


class LaneHealth:
    """Builds the health dictionary from the daemon's parts; cheap enough to call every second."""

    def __init__(self, daemon: Any):
        self.d = daemon
        self.started_mono = time.monotonic()
        self.started_at = now_iso()

    def snapshot(self) -> dict[str, Any]:
        d, cfg = self.d, self.d.config
        now = datetime.now(UTC)
        unread = None
        try:  # ledger.db gone for a moment (written back), or replaced: health still says what it can
            out = d.outbox.stats()
            view = d.ledger.view()
            still_open = view.quarantined_after(view.acknowledged_seq(d.ledger.path.parent)) if out.quarantined else 0
            last_sale_at = view.last_sale_at()
            recent = [q.to_json() for q in view.quarantined(QUARANTINED_SHOWN)] if out.quarantined else []
        except ReadFailed as exc:
            out, still_open, last_sale_at, recent = OutboxStats(0, None, 0, 0), 0, None, []
            unread = d.ledger.replaced or f"cannot read ledger.db now ({exc})"
        oldest = out.oldest_pending_at
        oldest_s = round((now - oldest).total_seconds(), 1) if oldest else None
        relay, pull = d.relay.status(), d.puller.status()
        if relay.get("clock_skew_s") is None:  # nothing pushed yet: the pulls saw central's Date too
            relay["clock_skew_s"] = pull.get("clock_skew_s")
        cache = d.cache_health(now)
        printer_name = d.printer.name if d.lane.context.printer_enabled else None
        devices = self.devices(printer_name)
        storage = self.storage()
        issues = assess_devices(devices, printer_name)
        if cache["program_version"] is None:
            issues.append(issue("program_missing", ERROR))
        elif (program := d.lane.context.program()) is not None and \
                cfg.lane.currency not in (earned := compiled(program).earned):  # made once per program
            # every sale in the till's money is refused unsupported_currency; a config that leaves [lane]
            # currency at its default may only not have said which money the till takes (sales name theirs)
            said = "currency" in cfg.lane.model_fields_set
            issues.append(issue("currency_not_earned", ERROR if said else WARNING, currency=cfg.lane.currency,
                                version=program.version, earned=", ".join(earned) or "-"))
        if d.ledger.write_failure or unread:
            issues.append(issue("ledger_unwritable", ERROR, detail=d.ledger.write_failure or unread))
        if printer_name and not d.print_worker.alive:
            issues.append(issue("print_worker_stopped", ERROR))
        issues += assess_sync(relay, pull, out.pending, oldest_s, still_open)
        if cache["stale"]:
            issues.append(issue("cache_stale", WARNING, age_s=cache["age_s"]))
        if storage["free_mb"] is not None and storage["free_mb"] < storage["min_free_mb"]:
            issues.append(issue("disk_low", WARNING, free_mb=storage["free_mb"], min_free_mb=storage["min_free_mb"]))
        severities = {i["severity"] for i in issues}
        last_contact = d.last_contact_at()  # this run's, or remembered from before a restart
        return {
            "status": "error" if ERROR in severities else ("degraded" if WARNING in severities else "ok"),
            "problems": [problem_text(i) for i in issues],
            "issues": issues,
            "version": __version__,
            "store_id": cfg.lane.store_id,
            "lane_id": cfg.lane.lane_id,
            "locale": cfg.lane.locale,
            "timezone": cfg.lane.timezone,
            "started_at": self.started_at,
            "uptime_s": round(time.monotonic() - self.started_mono, 1),
            "last_sale_at": last_sale_at,
            "devices": devices,
            "sync": {
                "pending": out.pending,
                "oldest_pending_age_s": oldest_s,
                "quarantined": out.quarantined,
                "quarantined_acknowledged": out.quarantined - still_open,  # posd ledger quarantine --acknowledge
                "quarantined_recent": recent,
                "last_acked_seq": out.last_acked_seq,
                **relay,
                "online": not any(w.get("consecutive_failures", 0) > 0 for w in (relay, pull)),
                "last_sync_at": datetime.fromtimestamp(last_contact, UTC).isoformat(timespec="seconds")
                if last_contact is not None else None,
                "pull": pull,
            },
            "cache": cache,
            "storage": storage,
        }

    def devices(self, printer_name: str | None) -> list[dict[str, Any]]:
        out = []
        for rec in self.d.devices.snapshot():
            entry = {"name": rec.name, "kind": rec.kind, "url": rec.url, "state": rec.state, "reason": rec.reason,
                     "since": rec.since, "last_error": rec.last_error, "paper": None}
            if rec.name == printer_name:
                entry["paper"] = paper_state(getattr(self.d.printer, "last_status", None), rec.reason)
            out.append(entry)
        return out

    def storage(self) -> dict[str, Any]:
        cfg = self.d.config
        try:
            free_mb: int | None = shutil.disk_usage(cfg.storage_dir).free // 2**20
        except OSError:
            free_mb = None
        ledger = database_size(self.d.ledger.path)
        return {"free_mb": free_mb, "min_free_mb": cfg.storage.min_free_mb, "ledger_bytes": ledger,
                "ledger_mb": None if ledger is None else round(ledger / 2**20, 3)}


def status_line(health: dict[str, Any]) -> str:
    """systemd's STATUS=: the lane's state in one short line (``systemctl status posd``)."""
    sync = health["sync"]
    line = f"{health['status']}: central {'online' if sync['online'] else 'unreachable'}, {sync['pending']} waiting"
    if health["problems"]:
        line += " - " + "; ".join(health["problems"][:3])
    return line
