"""/metrics: the lane in Prometheus' text format, through prometheus-client.

Two kinds of figures:

- counted where they happen, cheaply (a counter ``inc`` or a histogram
  ``observe``: a lock held for a few additions, never across I/O): sales,
  returns and redemptions by outcome, request latency per route, print jobs by
  outcome, push attempts, latency and batch size;
- read when Prometheus scrapes, from the same health snapshot /v1/health
  serves (``LaneCollector``): outbox, last successful push and pull, cache age
  and members cached (a count kept by the puller, not a ``COUNT(*)`` per
  scrape), device states, free disk.

Each daemon has its own registry (tests run several in one process), with
the process, platform and garbage-collector collectors prometheus-client
ships. Label values (a device name with a quote in it) are escaped by the
library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from posd.storage.db import parse_iso

# The Prometheus text format prometheus-client writes (generate_latest).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEVICE_STATES = ("closed", "idle", "busy", "error")
HEALTH_STATES = ("ok", "degraded", "error")
# Request latency: a sale's floor is well under a millisecond; a slow disk shows in the top buckets.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
PUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
# The methods the API answers; any other is labelled "other" (a label value per method a client sends is
# a series each: the set is bounded, but by the HTTP parser's list, not by this API).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNTIMED_ROUTES = frozenset({"/v1/events"})  # a stream lasts as long as the POS listens


class LaneMetrics:
    """The daemon's registry and the counters its parts feed."""

    def __init__(self, health: Callable[[], dict[str, Any]], bus: Any = None, ledger: Any = None):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.sales = Counter("posd_sales", "Sales (POST /v1/transactions) by outcome: recorded, replayed "
                             "(a retry answered from the ledger) or the error code", ["outcome"], registry=r)
        self.returns = Counter("posd_returns", "Returns by outcome: recorded, replayed or the error code",
                               ["outcome"], registry=r)
        self.redemptions = Counter("posd_redemptions", "Redemptions by outcome: recorded, replayed or the "
                                   "error code", ["outcome"], registry=r)
        self.request_seconds = Histogram("posd_http_request_duration_seconds", "Local API requests: time from "
                                         "the request to the end of the answer, per route template",
                                         ["route", "method"], buckets=LATENCY_BUCKETS, registry=r)
        self.print_jobs = Counter("posd_print_jobs", "Print jobs by outcome: printed, held (once per job and "
                                  "reason), expired, failed", ["outcome"], registry=r)
        self.push_attempts = Counter("posd_sync_push_attempts", "Pushes of outbox batches to central by outcome "
                                     "(sent, failed)", ["outcome"], registry=r)
        self.push_seconds = Histogram("posd_sync_push_duration_seconds", "Time of a successful push, request "
                                      "to central's answer", buckets=PUSH_BUCKETS, registry=r)
        self.push_events = Histogram("posd_sync_push_batch_events", "Events per pushed batch",
                                     buckets=BATCH_BUCKETS, registry=r)
        self.token_replays = Counter("posd_member_token_replays_flagged", "token_use events central flagged: a "
                                     "member token accepted here (offline) had been used at another lane first",
                                     registry=r)
        self.birthday_repeats = Counter("posd_birthday_repeats_flagged", "accruals central flagged: a birthday "
                                        "bonus this lane gave (offline) had been given at another lane first "
                                        "that year", registry=r)
        self.device_changes = Counter("posd_device_state_changes", "Device state changes, by device and the "
                                      "state entered", ["device", "kind", "state"], registry=r)
        r.register(LaneCollector(health, bus, ledger))
        self._outcomes = {"sale": self.sales, "return": self.returns, "redemption": self.redemptions}
        self._timers: dict[tuple[str, str], Any] = {}
        self._children: dict[tuple[str, str], Any] = {}

    # -- fed by the API (ApiObserver) and the daemon ------------------------------------
    def request(self, route: str, method: str, seconds: float) -> None:
        if route in UNTIMED_ROUTES:
            return
        if method not in METHODS:  # PROPFIND, MKCOL, ... (any client may send them): one series, not one each
            method = "other"
        key = (route, method)
        child = self._timers.get(key)
        if child is None:  # one labels() lookup per route, then a plain observe
            child = self._timers[key] = self.request_seconds.labels(route, method)
        child.observe(seconds)

    def outcome(self, kind: str, outcome: str) -> None:
        key = (kind, outcome)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._outcomes[kind].labels(outcome)
        child.inc()

    def print_job(self, outcome: str) -> None:
        self.print_jobs.labels(outcome).inc()

    def pushed(self, seconds: float | None, events: int, ok: bool) -> None:
        self.push_attempts.labels("sent" if ok else "failed").inc()
        if ok and seconds is not None:
            self.push_seconds.observe(seconds)
            self.push_events.observe(events)

    def token_replays_flagged(self, count: int) -> None:
        self.token_replays.inc(count)

    def birthday_repeats_flagged(self, count: int) -> None:
        self.birthday_repeats.inc(count)

    def device_changed(self, device: str, kind: str, state: str) -> None:
        self.device_changes.labels(device, kind, state).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class LaneCollector(Collector):
    """Gauges read at scrape time from the health snapshot."""

    def __init__(self, health: Callable[[], dict[str, Any]], bus: Any = None, ledger: Any = None):
        self.health, self.bus, self.ledger = health, bus, ledger

    def describe(self) -> list[Metric]:
        return []  # the families depend on the lane's devices: not described ahead of a scrape

    def collect(self) -> Iterator[Metric]:
        h = self.health()
        sync, cache, storage = h["sync"], h["cache"], h.get("storage", {})
        yield _gauge("posd_up", "1 while the daemon answers", 1)
        info = GaugeMetricFamily("posd_info", "The lane and the posd version", labels=["version", "store", "lane"])
        info.add_metric([h["version"], h["store_id"], h["lane_id"]], 1)
        yield info
        state = GaugeMetricFamily("posd_health_status", "1 for the lane's current health status "
                                  "(ok, degraded, error), 0 for the others", labels=["status"])
        for s in HEALTH_STATES:
            state.add_metric([s], 1 if h["status"] == s else 0)
        yield state
        yield _gauge("posd_uptime_seconds", "Seconds since the daemon started", h["uptime_s"])
        yield _gauge("posd_outbox_pending", "Events waiting to be sent to central", sync["pending"])
        yield _gauge("posd_outbox_oldest_pending_age_seconds", "Age of the oldest event waiting for central "
                     "(0 when none)", sync["oldest_pending_age_s"] or 0)
        yield _gauge("posd_outbox_quarantined", "Events central refused for good", sync["quarantined"])
        yield _gauge("posd_sync_online", "1 when the last contacts with central succeeded", int(sync["online"]))
        yield _timestamp("posd_sync_last_push_success_timestamp_seconds",
                         "Unix time of the last successful push to central", sync.get("last_success_at"))
        yield _timestamp("posd_sync_last_pull_success_timestamp_seconds",
                         "Unix time of the last successful pull from central", sync["pull"].get("last_success_at"))
        if sync.get("clock_skew_s") is not None:
            yield _gauge("posd_sync_clock_skew_seconds", "Central's clock minus the lane's", sync["clock_skew_s"])
        yield _gauge("posd_members_cached", "Members in cache.db", cache["members"])
        if cache.get("age_s") is not None:
            yield _gauge("posd_cache_age_seconds", "Seconds since members were last refreshed from central",
                         cache["age_s"])
        yield _gauge("posd_cache_stale", "1 when the members are out of date", int(cache["stale"]))
        if storage.get("free_mb") is not None:
            yield _gauge("posd_storage_free_bytes", "Free space on the storage file system",
                         storage["free_mb"] * 2**20)
        if storage.get("ledger_bytes") is not None:
            yield _gauge("posd_ledger_size_bytes", "Size of ledger.db with its -wal and -shm files",
                         storage["ledger_bytes"])
        yield from _devices(h["devices"])
        if self.bus is not None:
            yield CounterMetricFamily("posd_events_published", "Events published on the stream",
                                      value=self.bus.published)
            yield _gauge("posd_sse_clients", "Event stream clients connected", self.bus.subscribers)
        if self.ledger is not None:  # group commit at work: units per commit
            yield CounterMetricFamily("posd_ledger_commits", "ledger.db transactions committed (a group of "
                                      "units counts once)", value=self.ledger.commits)
            yield CounterMetricFamily("posd_ledger_units", "Units of work those commits made durable",
                                      value=self.ledger.units)


def _devices(devices: list[dict[str, Any]]) -> Iterator[Metric]:
    state = GaugeMetricFamily("posd_device_state", "1 for each device's current state, 0 for the others",
                              labels=["device", "kind", "state"])
    up = GaugeMetricFamily("posd_device_up", "1 when the device is idle or busy", labels=["device", "kind"])
    error = GaugeMetricFamily("posd_device_error", "1 for a device in error, with its reason",
                              labels=["device", "kind", "reason"])
    for d in devices:
        for s in DEVICE_STATES:
            state.add_metric([d["name"], d["kind"], s], 1 if d["state"] == s else 0)
        up.add_metric([d["name"], d["kind"]], 0 if d["state"] in ("error", "closed") else 1)
        if d["state"] == "error":
            error.add_metric([d["name"], d["kind"], d["reason"] or "error"], 1)
    yield state
    yield up
    yield error


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _timestamp(name: str, documentation: str, iso: str | None) -> GaugeMetricFamily:
    """Unix seconds of an ISO time; 0 when it never happened (Prometheus' convention for 'never')."""
    return GaugeMetricFamily(name, documentation, value=parse_iso(iso).timestamp() if iso else 0)
