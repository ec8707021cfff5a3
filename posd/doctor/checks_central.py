"""posd doctor: central, one layer at a time: DNS, TCP, TLS, a signed request, the clocks.

Each layer is only tried when the one below answered, so the first failure
is the one to fix. The signed request is the relay's own first call
(``GET /v1/lanes/{store}/{lane}``, where central's history of the lane
ends): small, store-scoped, no member data.
"""

from __future__ import annotations

import socket
import ssl
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from posd.config import ConfigError
from posd.doctor import Context, Finding
from posd.sync.lane.client import CentralClient
from posd.sync.lane.errors import CentralAuthError, CentralRequestRejected, CentralUnavailable, SyncError
from posd.sync.protocol import TIMESTAMP_TOLERANCE_S

TIMEOUT_S = 5.0
CLOCK_WARN_S = 60.0  # a minute off is worth fixing before it nears the signature's window
CERT_WARN_DAYS = 21


def central(ctx: Context) -> list[Finding]:
    c = ctx.config.central
    parts = urlsplit(c.url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    out = []
    skip = lambda *checks: [Finding("central", f"central.{name}", "skip", "skipped",  # noqa: E731
                                    {"what": ctx.tr(f"doctor.check.{name}"),
                                     "reason": ctx.tr("doctor.skipped.central")}) for name in checks]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return [Finding("central", "central.dns", "fail", "dns_failed", {"host": host, "message": _why(exc)}),
                *skip("tcp", "tls", "signature", "clock")]
    addresses = sorted({info[4][0] for info in infos})
    out.append(Finding("central", "central.dns", "ok", "dns_ok", {"host": host, "addresses": ", ".join(addresses)}))
    started = time.monotonic()
    try:
        sock = socket.create_connection((host, port), timeout=TIMEOUT_S)
    except OSError as exc:
        return out + [Finding("central", "central.tcp", "fail", "tcp_failed",
                              {"host": host, "port": port, "message": _why(exc)}),
                      *skip("tls", "signature", "clock")]
    ms = round((time.monotonic() - started) * 1000)
    out.append(Finding("central", "central.tcp", "ok", "tcp_ok", {"host": host, "port": port, "ms": ms}))
    with sock:
        tls = _tls(ctx, sock, host, parts.scheme)
    out.append(tls)
    if tls.result == "fail":
        return out + skip("signature", "clock")
    return out + _signed(ctx)


def _tls(ctx: Context, sock: socket.socket, host: str, scheme: str) -> Finding:
    c = ctx.config.central
    if scheme != "https":
        return Finding("central", "central.tls", "warn", "tls_plain")
    context = ssl.create_default_context()
    if not c.verify_tls:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    cert = c.cert(ctx.config.base_dir)
    try:
        if cert:
            context.load_cert_chain(*cert) if isinstance(cert, tuple) else context.load_cert_chain(cert)
        with context.wrap_socket(sock, server_hostname=host) as tls:
            version = tls.version()
            peer = tls.getpeercert()
    except (ssl.SSLError, OSError) as exc:
        return Finding("central", "central.tls", "fail", "tls_failed", {"host": host, "message": _why(exc)})
    if not c.verify_tls:
        return Finding("central", "central.tls", "warn", "tls_unverified", {"version": version})
    until = datetime.fromtimestamp(ssl.cert_time_to_seconds(peer["notAfter"]), UTC) if peer else None
    days = (until - datetime.now(UTC)).days if until else None
    params = {"version": version, "until": until.date().isoformat() if until else "-", "days": days}
    if days is not None and days < CERT_WARN_DAYS:
        return Finding("central", "central.tls", "warn", "tls_expiring", params)
    return Finding("central", "central.tls", "ok", "tls_ok", params)


def _signed(ctx: Context) -> list[Finding]:
    cfg = ctx.config
    c = cfg.central
    lane = cfg.lane
    params: dict[str, Any] = {"store": lane.store_id, "lane": lane.lane_id}
    try:
        secret = c.secret_bytes(cfg.base_dir)
    except ConfigError as exc:  # the files check says why; without the secret nothing can be signed
        return [Finding("central", "central.signature", "skip", "skipped",
                        {"what": ctx.tr("doctor.check.signature"), "reason": exc.problems[0].message}),
                Finding("central", "central.clock", "skip", "skipped",
                        {"what": ctx.tr("doctor.check.clock"), "reason": exc.problems[0].message})]
    with CentralClient(c.url, lane.store_id, lane.lane_id, secret, verify=c.verify_tls,
                       cert=c.cert(cfg.base_dir), timeout=(TIMEOUT_S, 10)) as client:
        silent = False
        try:
            client.lane_head(lane.lane_id)
            found = Finding("central", "central.signature", "ok", "signature_ok", params)
        except CentralAuthError as exc:
            found = Finding("central", "central.signature", "fail", "signature_refused",
                            {**params, "status": exc.status, "code": exc.code or ""})
        except CentralRequestRejected as exc:  # past the signature: central only lacks the lane call
            found = Finding("central", "central.signature", "ok" if exc.status == 404 else "fail",
                            "signature_ok" if exc.status == 404 else "signature_error", {**params, "message": str(exc)})
        except SyncError as exc:  # no answer (a timeout, a dropped connection) or one not of the protocol
            found = Finding("central", "central.signature", "fail", "signature_error", {**params, "message": str(exc)})
            silent = isinstance(exc, CentralUnavailable) and exc.status is None
        skew = client.last_clock_skew_s
    if skew is None and silent:  # no answer came: no Date to read either
        return [found, Finding("central", "central.clock", "skip", "skipped",
                               {"what": ctx.tr("doctor.check.clock"), "reason": ctx.tr("doctor.skipped.central")})]
    return [found, _clock(ctx, skew)]


def _clock(ctx: Context, skew: float | None) -> Finding:
    """``skew`` is central's Date minus the lane's clock (docs/sync-protocol.md): above 0, the lane is behind."""
    if skew is None:
        return Finding("central", "central.clock", "warn", "clock_unknown")
    params = {"skew": round(skew), "apart": abs(round(skew)), "limit": TIMESTAMP_TOLERANCE_S,
              "side": ctx.tr("doctor.clock.behind" if skew > 0 else "doctor.clock.ahead")}
    if abs(skew) >= TIMESTAMP_TOLERANCE_S:
        return Finding("central", "central.clock", "fail", "clock_skew", params)
    if abs(skew) >= CLOCK_WARN_S:
        return Finding("central", "central.clock", "warn", "clock_skew", params)
    return Finding("central", "central.clock", "ok", "clock_ok", params)


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
