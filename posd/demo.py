"""`posd demo` (`make run`): the reference central and a lane, on loopback.

Both run as child processes, exactly as they would on their own; this only
starts them, waits until the lane is healthy, says what to try, and stops
both on Ctrl-C.
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
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


def run_demo(config_path: Path, seed: Path) -> int:
    config = load(config_path)
    central = urlsplit(config.central.url)
    storage = config.storage_dir
    storage.mkdir(parents=True, exist_ok=True)
    central_db = storage.parent / "central.db"
    py = sys.executable
    children: list[subprocess.Popen] = []

    def stop(*_: object) -> None:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))
    try:
        children.append(subprocess.Popen([py, "-m", "posd", "central", "--listen", central.netloc,
                                          "--db", str(central_db), "--seed", str(seed)]))
        if not _wait_http(f"{config.central.url}/v1/program", 15, children[0]):
            print("posd demo: the reference central did not start", file=sys.stderr)
            return 1
        children.append(subprocess.Popen([py, "-m", "posd", "run", "--config", str(config_path)]))
        health = f"http://{config.api.listen}/v1/health"
        if not _wait_http(health, 20, children[1]):
            print("posd demo: the daemon did not start", file=sys.stderr)
            return 1
        _wait_synced(health, 15)
        token_file = resolve(storage, config.api.token_file).resolve()
        _print_try_this(config_path, config, token_file, seed)
        while all(c.poll() is None for c in children):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


def _wait_synced(health_url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(health_url, timeout=1) as resp:
                if json.load(resp)["cache"]["members"] > 0:
                    return
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(0.2)


def _print_try_this(config_path: Path, config, token_file: Path, seed: Path) -> None:
    members = json.loads(seed.read_text())["members"]
    card = members[0]["identifiers"][0]
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
  status:         {api}/v1/health
  event stream:   curl -N -H "Authorization: Bearer $(cat {token_file})" {api}/v1/events
  central:        {config.central.url}/_admin/events?store={config.lane.store_id}&lane={config.lane.lane_id}

Try this, in another terminal:
  .venv/bin/posd scan {card} --config {cfg}        # a member card at the scanner
  .venv/bin/posd scan --member-token {members[0]["member_id"]} --config {cfg}   # the member's phone QR, signed by central
  .venv/bin/posd scan --wallet-pass {members[0]["member_id"]} --config {cfg}    # the member's wallet pass (TOTP)
  curl -s -H "Authorization: Bearer $(cat {token_file})" -H 'Content-Type: application/json' \\
       -d '{body}' {api}/v1/transactions
  ls {slips}                                     # the slip: .bin (ESC/POS bytes) and .txt
Demo cards: {", ".join(m["identifiers"][0] + " (" + m["display_name"] + ")" for m in members)}
""", flush=True)
