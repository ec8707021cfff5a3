"""sd_notify(3) without libsystemd: READY, STATUS, STOPPING and watchdog pings.

A datagram to $NOTIFY_SOCKET; a no-op when not started by systemd. Tests bind
their own socket and point NOTIFY_SOCKET at it.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, env: dict[str, str] | None = None):
        env = dict(os.environ if env is None else env)
        addr = env.get("NOTIFY_SOCKET")
        if addr and addr.startswith("@"):
            addr = "\0" + addr[1:]  # abstract namespace
        self.address = addr
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        self.watchdog_s = int(usec) / 1e6 if usec and usec.isdigit() and (not pid or pid == str(os.getpid())) else None

    def notify(self, *fields: str) -> bool:
        if not self.address:
            return False
        try:
            # Non-blocking: it is sent from the event loop, which must never wait on systemd. A datagram
            # that does not fit in the socket's queue right now is dropped (and False returned).
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as s:
                s.connect(self.address)
                s.sendall("\n".join(fields).encode())
            return True
        except OSError:
            return False

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", f"STATUS={status}") if status else self.notify("READY=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")
