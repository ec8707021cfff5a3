"""`posd demo` (`make run`): the reference central and a lane (or two), on loopback.

They run as child processes, exactly as they would on their own; this only
starts them, waits until the lanes are healthy, says what to try, and stops
them all on Ctrl-C. A second lane of the same store (``--second-lane``) shows
a voucher issued at one lane used at the other.
"""

from __future__ import annotations

import ctypes
import json
import os
import shlex
import socket
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from posd.config import load, resolve


def _wait_http(url: str, timeout: float, proc: subprocess.Popen) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status < 500:
                    return True
        except urllib.error.HTTPError as exc:
            if exc.code < 500:  # it answers (central wants a signature): it is up
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


class _Stop(Exception):
    """SIGINT, SIGTERM or SIGHUP reached the demo: stop everything."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1


def _end_with_parent(parent: int) -> None:
    """In a child, before it runs: SIGTERM when the demo ends, however it ends (kill -9 too), and
    SIGINT as a child would have it (a shell's background job starts with it ignored)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the demo ended before the request took hold
        os.kill(os.getpid(), signal.SIGTERM)


def _listening(host: str, port: int) -> bool:
    """Does something accept connections at host:port?"""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _labelled(label: str, cmd: list[str]) -> subprocess.Popen:
    """A child whose log lines (stderr) come out on ours, each after ``[label]``: with a central and
    two lanes in one terminal, every line says whose it is."""
    parent = os.getpid()
    child = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, errors="replace", bufsize=1,
                             preexec_fn=(lambda: _end_with_parent(parent)) if sys.platform.startswith("linux")
                             else None)

    def forward() -> None:
        assert child.stderr is not None
        for line in child.stderr:  # until the child ends and its end of the pipe closes
            try:
                sys.stderr.write(f"[{label}] {line}")
                sys.stderr.flush()
            except (OSError, ValueError):  # our stderr is gone: keep draining, so the child never blocks
                pass

    threading.Thread(target=forward, name=f"demo-log-{label}", daemon=True).start()
    return child


def run_demo(config_path: Path, seed: Path, second_lane: Path | None = None) -> int:
    config = load(config_path)
    second = load(second_lane) if second_lane else None
    if second is not None and (second.central.url, second.lane.store_id) != (config.central.url, config.lane.store_id):
        print("posd demo: the second lane must name the first lane's central and store", file=sys.stderr)
        return 2
    if second is not None:  # two daemons on one storage folder or one API port: the second cannot start
        same_dir = second.storage_dir.resolve() == config.storage_dir.resolve()
        shared = [f"storage folder {config.storage_dir}"] if same_dir else []
        shared += [f"API port {config.api.port}"] if second.api.port == config.api.port else []
        if shared:
            print(f"posd demo: the second lane ({second_lane}) has the first lane's {' and '.join(shared)}: give it "
                  "its own [storage] dir and [api] listen, as config/demo-lane2.toml does", file=sys.stderr)
            return 2
    central = urlsplit(config.central.url)
    addresses = [("the reference central", central.hostname or "127.0.0.1",
                  central.port or (443 if central.scheme == "https" else 80))]
    addresses += [(f"the lane of {path}", cfg.api.host, cfg.api.port)
                  for path, cfg in [(config_path, config), (second_lane, second)] if cfg is not None]
    for name, host, port in addresses:  # else another server's answer would pass for ours
        if _listening(host, port):
            print(f"posd demo: {host}:{port}, {name}'s address, is in use by another process (a demo "
                  "still running?); stop it or give the demo other ports", file=sys.stderr)
            return 2
    storage = config.storage_dir
    storage.mkdir(parents=True, exist_ok=True)
    central_db = storage.parent / "central.db"
    py = sys.executable
    children: list[subprocess.Popen] = []

    def stop() -> None:
        for sig in STOP_SIGNALS:  # a second Ctrl-C while the children stop: they are being stopped
            if signal.getsignal(sig) is not signal.SIG_IGN:
                signal.signal(sig, lambda *_: None)
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def on_signal(*_: object) -> None:
        raise _Stop

    # Handlers of our own, not KeyboardInterrupt alone: a script's background job starts with SIGINT
    # ignored, and SIGHUP (the terminal closed) would end the demo and leave its children serving.
    # A SIGHUP ignored on purpose (nohup) stays ignored, for the demo and its children.
    for sig in STOP_SIGNALS:
        if sig != signal.SIGHUP or signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, on_signal)
    try:
        children.append(_labelled("central", [py, "-m", "posd", "central", "--listen", central.netloc,
                                              "--db", str(central_db), "--seed", str(seed)]))
        if not _wait_http(f"{config.central.url}/v1/program", 15, children[0]):
            print("posd demo: the reference central did not start", file=sys.stderr)
            return 1
        lanes = [(config_path, config)] + ([(second_lane, second)] if second is not None else [])
        for path, cfg in lanes:
            children.append(_labelled(f"{cfg.lane.store_id}/{cfg.lane.lane_id}",
                                      [py, "-m", "posd", "run", "--config", str(path)]))
            health = f"http://{cfg.api.listen}/v1/health"
            if not _wait_http(health, 20, children[-1]):
                print(f"posd demo: the daemon of {path} did not start", file=sys.stderr)
                return 1
            _wait_synced(health, 15, _pty_links(cfg))
        token_file = resolve(storage, config.api.token_file).resolve()
        _print_try_this(config_path, config, token_file, seed)
        if second is not None:
            _print_second_lane(second_lane, second, config, token_file, seed)  # type: ignore[arg-type]
        names = ["the reference central"] + [f"the daemon of {path}" for path, _ in lanes]
        while all(c.poll() is None for c in children):
            time.sleep(0.5)
        for name, child in zip(names, children):
            if child.poll() is not None:  # say which one, before the others are stopped with it
                print(f"posd demo: {name} (pid {child.pid}) ended with exit status {child.returncode}; "
                      "stopping the demo", file=sys.stderr)
        return 1
    except (_Stop, KeyboardInterrupt):
        return 0
    finally:
        stop()


def _pty_links(config) -> list[Path]:
    """Where the lane's virtual scanners appear: what `posd scan` types into."""
    from posd.drivers.url import parse_device_url

    return [Path(parse_device_url(config.device_url(s.url)).fs_path) for _, s in config.scanners()
            if s.url.startswith("pty:")]


def _wait_synced(health_url: str, timeout: float, links: list[Path]) -> None:
    """Until the lane has its members and its virtual scanners are linked: then "Try this" works."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(health_url, timeout=1) as resp:
                if json.load(resp)["cache"]["members"] > 0 and all(link.exists() for link in links):
                    return
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(0.2)


def _print_try_this(config_path: Path, config, token_file: Path, seed: Path) -> None:
    members = json.loads(seed.read_text())["members"]
    card = members[0]["identifiers"][0]
    token_member = members[min(1, len(members) - 1)]["member_id"]  # the README's: Łukasz's phone, Anna's pass
    api = f"http://{config.api.listen}"
    cfg = shlex.quote(str(config_path))
    now = datetime.now(UTC).astimezone().isoformat(timespec="seconds")
    body = json.dumps({"transaction_id": "demo-0001", "member": card, "occurred_at": now,
                       "currency": config.lane.currency, "total": 12999,
                       "lines": [{"sku": "5901234123457", "category": "grocery", "quantity": 1,
                                  "unit_price": 12999}]})
    slips = Path(config.device_url(config.printer.url).partition("://")[2]).resolve()
    print(f"""
posd demo is running (Ctrl-C stops it).
  status page:    {api}/   (health as JSON: {api}/v1/health, metrics: {api}/metrics)
  central:        {config.central.url}/_admin/events?store={config.lane.store_id}&lane={config.lane.lane_id}

Try this, in order, in other terminals:
  1. the event stream, left open (the POS's view):
     curl -N -H "Authorization: Bearer $(cat {token_file})" {api}/v1/events
  2. a member card at the scanner (member.identified appears on the stream):
     .venv/bin/posd scan {card} --config {cfg}
     and a member's phone QR (signed by central) and wallet pass (TOTP), as the README's:
     .venv/bin/posd scan --member-token {token_member} --config {cfg}
     .venv/bin/posd scan --wallet-pass {members[0]["member_id"]} --config {cfg}
  3. a sale for that member (points, balance; the slip prints):
     curl -s -H "Authorization: Bearer $(cat {token_file})" -H 'Content-Type: application/json' \\
          -d '{body}' {api}/v1/transactions
  4. the slip:  ls {slips}        (.bin ESC/POS bytes, .txt, .png)
  5. what store IT runs when something is off:  .venv/bin/posd doctor --config {cfg}
Demo cards: {", ".join(m["identifiers"][0] + " (" + m["display_name"] + ")" for m in members)}
""", flush=True)


def _print_second_lane(path: Path, config, first, first_token: Path, seed: Path) -> None:
    """A voucher issued at the first lane, used at the second: central authorises both burns."""
    card = json.loads(seed.read_text())["members"][0]["identifiers"][0]
    token = resolve(config.storage_dir, config.api.token_file).resolve()
    redeem = json.dumps({"redemption_id": "demo-r1", "member": card, "reward_id": "free-coffee"})
    use = json.dumps({"transaction_id": "demo-0002", "member": card})
    print(f"""A second lane, {config.lane.lane_id}, is running on http://{config.api.listen} (config {path}).
A voucher issued at lane {first.lane.lane_id} is good at lane {config.lane.lane_id}:
  curl -s -H "Authorization: Bearer $(cat {first_token})" -H 'Content-Type: application/json' \\
       -d '{redeem}' http://{first.api.listen}/v1/redemptions
  # the answer's voucher.code (V + 12 characters) and "authorised": "online"; then, at the other lane:
  curl -s -H "Authorization: Bearer $(cat {token})" -H 'Content-Type: application/json' \\
       -d '{use}' http://{config.api.listen}/v1/vouchers/CODE/use
  # once: the same code again, at either lane, is 409 voucher_used
Second lane ready.
""", flush=True)
