"""`posd run`: one process, one asyncio loop, device and sync threads around it.

Start order: databases (a bad ledger stops us here), lane services, printer
and print worker, sync, API listening, then READY=1 to systemd, then the
scanners. Stop order is the reverse, so nothing is left half-done: the ledger
closes last, after every thread that writes to it has stopped.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import secrets
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn

from posd import __version__
from posd.api import server as api_server
from posd.api.app import create_app, create_status_app
from posd.api.security import BearerToken
from posd.config import Config, ConfigError, read_token, resolve
from posd.drivers import registry
from posd.drivers.base import CardRejected, DeviceStatus, ScanData
from posd.drivers.hotplug import HotplugWatcher, udev_monitor
from posd.health import DeviceBoard, LaneHealth, status_line
from posd.lane import Lane
from posd.lane.authority import CentralAuthority
from posd.lane.events import EventBus
from posd.lane.members import STALE_AFTER
from posd.lane.print_worker import PrintWorker
from posd.lane.rewards import OfflineLimits
from posd.member_pull import ProcessMemberPull
from posd.metrics import LaneMetrics
from posd.sdnotify import Notifier
from posd.storage import meta
from posd.storage.cache import Cache, seal_key_from
from posd.storage.db import StorageUnavailable, hold_folder, parse_iso, release_folder, utcnow_iso
from posd.storage.ledger import LaneIdentity, Ledger
from posd.storage.outbox import LedgerOutbox
from posd.stop_signals import STOP_SIGNALS, early_stop
from posd.storage.tx import OUTBOX, VOUCHER
from posd.sync.lane.authoriser import BurnAuthoriser
from posd.sync.lane.client import CentralClient
from posd.sync.lane.puller import SyncPuller
from posd.sync.lane.relay import OutboxRelay
from posd.sync.protocol import BIRTHDAY_REPEATED

log = logging.getLogger("posd.daemon")

STATUS_EVERY_S = 2.0  # how often systemd's STATUS= is brought up to date (sent only when it changed)
CONTACT_EVERY_S = 30.0  # how often the last contact with central is written to cache.db (when it moved)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns shutdown."""

    def capture_signals(self):  # type: ignore[override]
        import contextlib

        return contextlib.nullcontext()


async def _serve(server: _Server) -> bool:
    """Serve until told to stop; False when it could not start (uvicorn logged why, e.g. the address is in
    use, and raises SystemExit, which would otherwise end the whole process with a traceback)."""
    try:
        await server.serve()
    except SystemExit:
        return False
    return True


def _server(app: Any, host: str, port: int) -> _Server:
    return _Server(api_server.config(app, host, port, timeout_graceful_shutdown=2))


def load_token(path: Path) -> str:
    """The API's bearer token; created (0600) on first start when absent, never rewritten when there
    (an unusable one is a ConfigError naming api.token_file: read_token)."""
    token = read_token(path)
    if token is not None:
        return token
    token = secrets.token_urlsafe(32)
    target = path.resolve()  # a link to a token not made yet: the file it names is made
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file where a folder on the way should be
        raise ConfigError(f"cannot create the API token {path}: cannot make the folder {target.parent} "
                          f"({exc.strerror})", key="api.token_file") from exc
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made since we looked: it is the POS's now
        made = read_token(path)
        if made is None:
            raise ConfigError(f"cannot read the API token {path}", key="api.token_file") from None
        return made
    except OSError as exc:
        raise ConfigError(f"cannot create the API token {path}: {exc.strerror}", key="api.token_file") from exc
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    log.info("created the API token %s (mode 0600)", path, extra={"event": "api.token_created"})
    return token


def _file_state(path: Path) -> tuple[int, int, int] | None:
    """What tells a file was written since: its inode, modification time and size (None: not there)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def device_path(url: Any) -> str | None:
    """The /dev path a device URL names (watched for hot-plug), else None."""
    if url.scheme in ("serial", "hid", "camera", "msr+hid", "msr+serial", "file") and url.fs_path.startswith("/dev/"):
        return url.fs_path
    return None


class Daemon:
    def __init__(self, config: Config):
        self.config = config
        self.devices = DeviceBoard()
        self.scanners: list[Any] = []
        self._last_sync_key: tuple[Any, ...] | None = None
        self._members = 0  # members in cache.db, counted by the puller's thread after it applied changes
        self._answered_at: float | None = None  # monotonic: any of the lane's clients last had central's answer
        self._stop = asyncio.Event()
        self._health = LaneHealth(self)

    # -- assembly -----------------------------------------------------------
    def open(self) -> None:
        cfg = self.config
        storage = cfg.storage_dir
        token_path = resolve(storage, cfg.api.token_file)
        self._token_file = _file_state(token_path)  # before it is read: one written after is read again
        token = read_token(token_path)  # before storage is touched: a token problem leaves nothing behind
        storage.mkdir(parents=True, exist_ok=True)
        self._folder_lock = hold_folder(storage)  # before the ledger is opened: one posd per ledger
        self.ledger = Ledger(storage / "ledger.db", LaneIdentity(cfg.lane.store_id, cfg.lane.lane_id))
        identity = self.ledger.sync_identity  # the lane id this ledger syncs under: relay, puller, cache follow it
        seal_key = seal_key_from(cfg.central.secret_bytes(cfg.base_dir))
        self.cache = Cache(storage / "cache.db", identity.lane_id, seal_key=seal_key, on_erased=self._erase,
                           kept_program=lambda version: self.ledger.view().program_body(version))
        self._contact_stored = self.cache.central_contact_at()
        self._contact_lock = threading.Lock()  # the puller's thread keeps the first contact, the loop the rest
        self.token = BearerToken(token if token is not None else load_token(token_path))  # once the ledger is taken
        self._token_path = token_path
        self._members = self.cache.member_count()
        self.bus = EventBus(self.ledger.boot)
        self.metrics = LaneMetrics(self.health, self.bus, ledger=self.ledger)
        self.outbox = LedgerOutbox(self.ledger)
        self.relay = OutboxRelay(self._central_client(), self.outbox, identity=identity,
                                 idle_interval=cfg.central.push_interval_s, on_status=self._sync_status,
                                 on_push=self.metrics.pushed, on_flagged=self._flagged)
        # a client (and requests.Session) per thread: Session is not promised thread-safe
        pull_client = self._central_client()
        # a snapshot is decoded and written in a process of its own: lookups never wait on its GIL
        self.puller = SyncPuller(pull_client, self.cache, member_interval=cfg.central.pull_interval_s,
                                 program_interval=cfg.central.pull_interval_s, on_status=self._pull_status,
                                 members=ProcessMemberPull(pull_client, storage / "cache.db", seal_key=seal_key,
                                                           on_erased=self._erase))
        # burns asked of central in real time, within the budget, from threads of their own
        self.authoriser = BurnAuthoriser(self._central_client, cfg.central.authorise_timeout_ms / 1000,
                                         identity=identity)
        identity.subscribe(lambda lane: (self.cache.use_lane(lane), self.puller.wake()))
        self.ledger.subscribe(OUTBOX, self.relay.wake)
        self.ledger.subscribe(VOUCHER, self.relay.hurry)  # the member may take it to the next lane at once
        pcfg = cfg.printer
        self.printer = registry.open_printer(pcfg.device_name, cfg.device_url(pcfg.url), profile=pcfg.profile, width_mm=pcfg.width_mm,
                                             code_pages=pcfg.code_pages, on_status=self._device_status)
        self._keep_printer_answers()
        off = cfg.offline
        self.lane = Lane(store_id=cfg.lane.store_id, lane_id=cfg.lane.lane_id, locale=cfg.lane.locale,
                         ledger=self.ledger, cache=self.cache, bus=self.bus,
                         printer_enabled=pcfg.enabled, is_offline=self._offline,
                         timezone=cfg.lane.timezone,
                         offline_limits=OfflineLimits(off.max_redeem_points_per_member,
                                                      off.max_redeem_points_per_lane, off.max_hours,
                                                      off.max_voucher_uses_per_member,
                                                      off.max_voucher_uses_per_lane),
                         last_sync=self._last_sync, render_png=self._slip_png,
                         token_keys=cfg.central.token_keys(), token_skew_s=cfg.central.member_token_clock_skew_s,
                         country=cfg.lane.country,
                         authority=CentralAuthority(self.authoriser.authorise, self.authoriser.lookup,
                                                    self.authoriser.budget_s, claim=self.authoriser.claim_token,
                                                    release=self.authoriser.release,
                                                    birthday=self.authoriser.claim_birthday,
                                                    refresh=self.puller.refresh))
        self.print_worker = PrintWorker(self.ledger, self.printer, self.bus, cfg.lane.locale,
                                        on_outcome=self.metrics.print_job)

    def _keep_printer_answers(self) -> None:
        """A printer that answered its status in an earlier run is one that answers: silent after a
        restart, it is offline and its held slips wait, never sent blind (counted printed, lost)."""
        key = meta.printer_answered_key(self.printer.url.address)
        if self.ledger.view().meta(key) is not None:
            self.printer.answers_status = True
            return  # kept already
        self.printer.on_first_answer = lambda: self.ledger.write(lambda tx: tx.set_meta(key, utcnow_iso()))

    def _erase(self, member_ids: list[str]) -> None:
        """Central deleted these members: scrub what ledger.db keeps of them (slips, enrolments), durably,
        before cache.db forgets them (the puller's thread)."""
        scrubbed = self.ledger.write(lambda tx: tx.forget_members(member_ids))
        log.info("erased %d member(s) central deleted (%s rows scrubbed)", len(member_ids), scrubbed,
                 extra={"event": "members.erased", "members": len(member_ids), "rows": scrubbed})

    def _central_client(self) -> CentralClient:
        c = self.config.central
        return CentralClient(
            c.url, self.config.lane.store_id, self.config.lane.lane_id, c.secret_bytes(self.config.base_dir),
            verify=c.verify_tls, cert=c.cert(self.config.base_dir),
            identity=self.ledger.sync_identity, on_answer=self._central_answered,
        )

    def _flagged(self, events: list[dict[str, Any]]) -> None:
        """Central flagged events (the relay's thread): counted and told, never quarantined."""
        birthdays = [e for e in events if e.get("code") == BIRTHDAY_REPEATED]
        if birthdays:
            self.metrics.birthday_repeats_flagged(len(birthdays))
            for e in birthdays:
                self.bus.publish("member.birthday_flagged", {
                    "member_id": e.get("member_id"), "transaction_id": e.get("transaction_id"),
                    "year": e.get("birthday_award_year"), "seq": e.get("seq"), "code": e.get("code")})
        tokens = [e for e in events if e.get("code") != BIRTHDAY_REPEATED]
        if tokens:
            self._tokens_flagged(tokens)

    def _tokens_flagged(self, events: list[dict[str, Any]]) -> None:
        """Central flagged token uses as replays: counted and told, not quarantined."""
        self.metrics.token_replays_flagged(len(events))
        for e in events:
            self.bus.publish("member.token_flagged", {
                "member_id": e.get("member_id"), "token_id": e.get("token_id"),
                "identified_by": e.get("identified_by"), "seq": e.get("seq"), "code": e.get("code")})

    def _central_answered(self) -> None:
        """Any of the lane's clients had an answer from central: the lane is not offline from here
        (_offline), and the other workers stop backing off (health clears "unreachable" at once, the
        next pull or push comes now)."""
        self._answered_at = time.monotonic()
        for worker in (getattr(self, "relay", None), getattr(self, "puller", None)):
            if worker is not None:
                worker.central_reached()

    def _slip_png(self, doc: Any) -> bytes:
        """A slip preview with this printer's profile, paper and code pages (Pillow loads on the first preview)."""
        from posd.drivers.printer_preview import slip_png

        pcfg = self.config.printer
        return slip_png(doc, pcfg.profile, pcfg.width_mm, pcfg.code_pages)

    def _pull_status(self, status: dict[str, Any]) -> None:
        """On the puller's thread after a pull changed something: count the members there, once,
        so neither health nor a metrics scrape runs a COUNT(*) over a million rows."""
        self._members = self.cache.member_count()
        # sync.status has one shape (RelayStatus): the relay's counts, the puller's state of the link
        relay = self.relay.status()
        self._sync_status({**relay, **{key: status[key] for key in relay.keys() & status.keys()}})
        if self._contact_stored is None:  # the lane's first contact ever: kept at once, not a second later
            self._store_contact()

    def _sync_status(self, status: dict[str, Any]) -> None:
        # The POS cares whether the lane is online and why not, not about every batch sent.
        key = ("online" if status.get("state") in ("ok", "idle") else status.get("state"), status.get("last_error"))
        if key[0] == "identity_conflict":  # central's watermarks of this lane id count another history: what
            self.cache.cap_applied(self.outbox.stats().last_acked_seq)  # this ledger has acked since counts
        if key != self._last_sync_key:
            self._last_sync_key = key
            self.bus.publish("sync.status", {**status, "online": key[0] == "online"})

    def _offline(self) -> bool:
        # either direction failing without an answer from central since means central is out of reach
        # right now (asked on every sale and burn)
        answered = self._answered_at
        return self.relay.out_of_reach(answered) or self.puller.out_of_reach(answered)

    def _last_sync(self):
        """The lane's last successful contact with central: this run's, or the one cache.db
        remembers from before a restart (the offline window counts from it)."""
        at = self.last_contact_at()
        return datetime.fromtimestamp(at, UTC) if at is not None else None

    def last_contact_at(self) -> float | None:
        times = [t for t in (self.relay.last_success_at(), self.puller.last_success_at(), self._contact_stored)
                 if t is not None]
        return max(times) if times else None

    async def _keep_files(self) -> None:
        """ledger.db and cache.db deleted or moved while posd runs are written back at once (Ledger.keep_file,
        Cache.keep_file): checked every second, and before every unit of the ledger's."""
        while True:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(self._keep_files_now)

    def _keep_files_now(self) -> None:
        for keep in (self.ledger.keep_file, self.cache.keep_file, self._reload_token):
            try:  # one failing (a bug, a mount gone odd) stops neither the others nor the next second's
                keep()
            except Exception:
                log.exception("keeping the storage files and the API token failed; tried again in a second")

    def _reload_token(self) -> None:
        """Store IT writes the POS's token into api.token_file (docs/install.md): taken when the file
        changes, no restart. A file that became unusable (empty, not one word) keeps the token in force."""
        seen = _file_state(self._token_path)
        if seen == self._token_file:
            return
        self._token_file = seen
        try:
            token = read_token(self._token_path)
        except ConfigError as exc:
            log.warning("%s; the API token in force stays", exc, extra={"event": "api.token_unusable"})
            return
        if token is None:
            log.warning("the API token %s is gone while posd runs; the token in force stays", self._token_path,
                        extra={"event": "api.token_unusable"})
        elif token.encode() != self.token.value:
            self.token.set(token)
            log.info("the API token %s changed: the new one is in force", self._token_path,
                     extra={"event": "api.token_changed"})

    async def _remember_contact(self) -> None:
        """Keep the last contact with central in cache.db (the first at once, then at most once a
        CONTACT_EVERY_S): a lane
        killed during an outage and started again burns offline within its caps until
        `[offline] max_hours` after that contact, not never."""
        while True:
            at = self.last_contact_at()
            if at is not None and (self._contact_stored is None or at - self._contact_stored >= CONTACT_EVERY_S):
                await asyncio.to_thread(self._store_contact)
            await asyncio.sleep(1.0)

    def _store_contact(self) -> None:
        """Keep the newest contact, from whichever thread asks: under a lock, so an older time read
        by one thread never overwrites a newer one another thread stored."""
        with self._contact_lock:
            at = self.last_contact_at()
            if at is not None and (self._contact_stored is None or at > self._contact_stored):
                try:
                    self.cache.record_central_contact(at)
                    self._contact_stored = at
                except Exception as exc:  # a full disk: the next round tries again; burns go on in memory
                    log.warning("could not remember the last contact with central: %s", exc)

    def _device_status(self, status: DeviceStatus) -> None:
        if not self.devices.update(status.name, status.kind, status.url, status.state.value, status.reason):
            return
        self.metrics.device_changed(status.name, status.kind, status.state.value)
        self.bus.publish("device.status", {"device": status.name, "kind": status.kind,
                                           "state": status.state.value, "reason": status.reason})

    def _on_scan(self, scan: ScanData) -> None:
        self.lane.members.on_scan(scan.device, scan.data, scan.symbology)

    def _on_card_rejected(self, card: CardRejected) -> None:
        # A payment card: the driver kept its data; only the fact reaches the POS.
        self.bus.publish("card.rejected", {"device": card.device, "reason": card.reason})

    # -- health ---------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """/v1/health, the status page, /metrics and STATUS= (posd/health.py)."""
        return self._health.snapshot()

    def cache_health(self, now: datetime) -> dict[str, Any]:
        synced = self.cache.state("members_synced_at")
        cache_age = (now - parse_iso(synced)).total_seconds() if synced else None
        return {
            "members": self._members,
            "program_version": self.cache.program_version(),
            "members_synced_at": synced,
            "age_s": round(cache_age, 1) if cache_age is not None else None,
            "stale": cache_age is None or cache_age > STALE_AFTER.total_seconds(),
            "rebuilt": self.cache.rebuilt_from is not None,
        }

    # -- running --------------------------------------------------------------
    async def run(self) -> int:
        # Device, sync and writer threads share one interpreter: a 1 ms GIL switch
        # interval (default 5 ms) keeps a scan's lookup from waiting behind a bulk
        # cache refresh; the throughput cost is small next to SQLite's fsync.
        sys.setswitchinterval(0.001)
        loop = asyncio.get_running_loop()
        notifier = Notifier()
        try:
            self.open()
        except OSError as exc:  # the storage folder is not usable (a token file names api.token_file): store IT must act
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):  # the disk, not the config: started again
                raise StorageUnavailable(f"{exc.filename or self.config.storage_dir}: the disk is full or failing "
                                         f"({exc.strerror}); posd starts once it has room (storage.dir)",
                                         lasting=False) from exc
            raise ConfigError(f"cannot use {exc.filename or 'a file'}: {exc.strerror or exc}",
                              key="storage.dir") from exc
        self.bus.bind(loop)
        # SIGHUP too: the terminal of a posd started by hand closing is a stop like any other, not a
        # death without STOPPING=1, a flushed ledger and the pty links taken down.
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._stop.set)
        early = early_stop()
        if early:  # asked to stop while it started: nothing is served, nothing asked of central
            log.info("%s while starting: stopping before serving", early)
            notifier.stopping()
            await asyncio.to_thread(self._stop_workers_and_close)
            return 0
        cfg = self.config
        app = create_app(lane=self.lane, bus=self.bus, token=self.token, host=cfg.api.host, port=cfg.api.port,
                         allowed_origins=cfg.api.allowed_origins, health=self.health, metrics=self.metrics.render,
                         observer=self.metrics)
        servers = {f"the API on {cfg.api.listen}": _server(app, cfg.api.host, cfg.api.port)}
        if cfg.status.listen:  # read-only, for the store network: the page and health, never the API
            servers[f"the status page on {cfg.status.listen}"] = _server(
                create_status_app(health=self.health), cfg.status.host, cfg.status.port)
        serving = {name: asyncio.create_task(_serve(server), name=name) for name, server in servers.items()}
        for name, server in servers.items():
            while not server.started:
                if serving[name].done():  # uvicorn logged why (address in use) and exited its task
                    log.error("could not listen: %s", name)
                    await self._shut_down(servers, serving)
                    await asyncio.to_thread(self._stop_workers_and_close)
                    return 1
                await asyncio.sleep(0.01)
        # Only a lane that listens starts: one that cannot asks central nothing (a new ledger would take
        # a sync identity of its own there) and prints nothing. A sale that came in meanwhile is in
        # the ledger, where the relay and the print worker find it when they start.
        self.print_worker.start()
        self.puller.start()
        self.relay.start()
        await asyncio.to_thread(self._start_scanners)  # opening devices and udev may block: off the loop
        # What start-up built (modules, the app, the program, the drivers) is never garbage. Frozen, a
        # full collection no longer walks it: its imports alone are some 85,000 objects, about 30 ms
        # of the event loop held at every full collection, a sale's answer waiting behind it.
        gc.freeze()
        notifier.ready(f"listening on {cfg.api.listen}")
        log.info("posd %s ready: store %s lane %s, API on http://%s/%s", __version__, cfg.lane.store_id,
                 cfg.lane.lane_id, cfg.api.listen, f", status page on http://{cfg.status.listen}/"
                 if cfg.status.listen else "")
        tasks = [asyncio.create_task(self._report_status(notifier), name="sd-status"),
                 asyncio.create_task(self._remember_contact(), name="contact"),
                 asyncio.create_task(self._keep_files(), name="files")]
        if notifier.watchdog_s:
            tasks.append(asyncio.create_task(self._watchdog(notifier), name="watchdog"))
        await self._stop.wait()
        notifier.stopping()
        log.info("stopping")
        for task in tasks:
            task.cancel()
        await asyncio.to_thread(self._stop_devices)  # joins their threads: off the loop, which still serves
        await self._shut_down(servers, serving)
        await asyncio.to_thread(self._stop_workers_and_close)
        return 0

    async def _shut_down(self, servers: dict[str, Any], serving: dict[str, asyncio.Task]) -> None:
        self.bus.close()  # event streams end cleanly instead of being cut by the server's shutdown
        for server in servers.values():
            server.should_exit = True
        for task in serving.values():
            await task

    async def _report_status(self, notifier: Notifier) -> None:
        """systemd's STATUS= follows the lane's state (`systemctl status posd` shows it)."""
        last = None
        while True:
            try:
                line = status_line(self.health())
            except Exception:  # health must never take the loop down; the next round tries again
                log.exception("health could not be computed")
                line = None
            if line and line != last:
                notifier.status(line)
                last = line
            await asyncio.sleep(STATUS_EVERY_S)

    def _stop_devices(self) -> None:
        # every device told first, then each waited for: the stop takes the longest wait, not their sum
        hotplug = getattr(self, "hotplug", None)
        devices = ([hotplug] if hotplug else []) + self.scanners
        for device in devices:
            device.begin_stop()
        for device in devices:
            device.stop()

    def _stop_workers_and_close(self) -> None:
        # both told first, then each waited for (each at most 5 s; a push or pull to a silent central runs
        # to its read timeout): a restart during an outage leaves the till without its API half as long
        self.relay.begin_stop()
        self.puller.begin_stop()
        self.relay.stop()
        self.puller.stop()
        self._store_contact()
        self.authoriser.close()
        self.print_worker.stop()
        self.close()

    def _start_scanners(self) -> None:
        for name, scfg in self.config.scanners():
            scanner = registry.open_scanner(name, self.config.device_url(scfg.url), on_data=self._on_scan, on_status=self._device_status)
            scanner.start()
            self.scanners.append(scanner)
        for name, ccfg in self.config.card_readers():
            reader = registry.open_card_reader(name, self.config.device_url(ccfg.url), on_data=self._on_scan,
                                               on_status=self._device_status, on_rejected=self._on_card_rejected)
            reader.start()
            self.scanners.append(reader)
        self._start_hotplug()

    def _start_hotplug(self) -> None:
        """Kick a device's reconnect when its path reappears; recheck the printer when its does."""
        self.hotplug = HotplugWatcher(monitor=udev_monitor())
        for device in self.scanners:
            path = device_path(device.url)
            if path:
                self.hotplug.watch(path, lambda present, d=device: present and d.kick())
        check = getattr(self.printer, "check_ready", None)
        path = device_path(self.printer.url)
        if check and path:
            self.hotplug.watch(path, lambda present: (check(), self.print_worker.wake()))
        if check:  # the printer's real status in health from the start, off the loop
            threading.Thread(target=check, name="printer-status", daemon=True).start()
        self.hotplug.start()

    async def _watchdog(self, notifier: Notifier) -> None:
        # Pinged from the loop itself, so a stalled loop is what systemd detects.
        while True:
            notifier.watchdog()
            await asyncio.sleep(notifier.watchdog_s / 2)

    def close(self) -> None:
        try:
            self.printer.close()
        except Exception:
            log.exception("printer close failed")
        self.cache.close()
        self.ledger.close()
        release_folder(self._folder_lock)
