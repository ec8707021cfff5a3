"""Fleet simulation: 20,000 lanes, a one-hour central outage in trading hours, then recovery.

Every lane runs the lane's real retry policy object (posd.sync.lane.retry.
RetryPolicy: the same code the relay thread asks) on a simulated clock,
against a model of central whose capacity is the ingestion rate the central
bench measured (bench/central.py). A discrete-event simulation: no thread,
no sleep; a full-scale run takes seconds of CPU.

Sales: a busy supermarket lane serves about 40 customers an hour (a
grocery cashier's shift report: 35 s per customer plus 2.8 s per item,
about 20 items a basket, so 91 s a customer), and about 90 % of a
programme's shoppers identify as members (FMI, Food Retailing Technology
Benchmarks 2008): 36 loyalty events per lane-hour, Poisson. Sources and
figures are in docs/sync-protocol.md (Central at chain scale).

The lane (as OutboxRelay does): a sale wakes it; it pushes up to
``max_events`` of its pending events after ``linger`` (at once after a full
batch); a failure waits what the policy says, new sales do not cut that
wait short. Central: down during the outage (a refused connection); then a
FIFO server of ``capacity`` events/s plus a per-request cost, answering
after its queue; an answer later than the client's 10 s read timeout is a
timeout to the lane (central applied it all the same: the resend is a
duplicate). Central's model is the reference central's own admission
object (posd.sync.central.admission.Admission): with ``paced`` it answers
429 with a Retry-After slot when its queue is longer than ``window`` s
(docs/sync-protocol.md, central-paced admission); without, it queues
everything, as central did before.

    python -m bench.fleet --out bench/fleet.json [--lanes 20000] [--capacity 3000]
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from posd.sync.central.admission import Admission  # noqa: E402
from posd.sync.lane.relay import BATCH_EVENTS  # noqa: E402
from posd.sync.lane.retry import RetryPolicy  # noqa: E402

EVENTS_PER_LANE_HOUR = 36.0  # 40 customers an hour x 90 % members (module docstring)
GOALS = {"drained_within_s": 600.0, "peak_over_steady_max": 2.0}


@dataclass
class Fleet:
    lanes: int = 20_000
    events_per_lane_hour: float = EVENTS_PER_LANE_HOUR
    warmup_s: float = 600.0  # trading before the outage: the steady state is measured here
    outage_s: float = 3600.0
    capacity_events_s: float = 3000.0  # central's measured ingestion rate
    request_cost_s: float = 0.0005  # central's time per request on top of its events
    client_timeout_s: float = 10.0  # the lane's read timeout
    max_events: int = BATCH_EVENTS  # the relay's events per push
    linger_s: float = 0.2
    paced: bool = True  # central-paced admission
    window_s: float = 2.0  # queue a paced central lets a push wait before it answers 429
    headroom: float = 0.25  # share of central's capacity its slots leave to lanes without one (admission.py)
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 300.0
    lane_policy_now: bool = True  # False: the lanes' policy before (full jitter to the cap, 429 as a floor)
    rate_window_s: float = 10.0  # request rates are counted per window of this length
    after_s: float = 3600.0  # simulated time after recovery at most
    seed: int = 1


@dataclass
class _Lane:
    policy: RetryPolicy
    created: int = 0  # events made (the lane's seq)
    acked: int = 0
    busy: bool = False  # a push in flight or a wait scheduled
    target: int | None = None  # events made before central came back
    drained_at: float | None = None


@dataclass
class Result:
    config: dict[str, Any]
    steady_requests_s: float
    peak_requests_s: float  # while central is up: what central itself must absorb
    peak_over_steady: float
    outage_peak_requests_s: float  # refused connections while central is down (a load balancer's load)
    outage_peak_over_steady: float
    backlog_events: int
    drained_s: float | None  # every lane's backlog acked, after recovery
    lane_drain_p50_s: float | None
    lane_drain_p99_s: float | None
    slowest_lane_s: float | None
    starved_lanes: int  # lanes whose backlog was not drained when the run ended
    requests: int
    refused: int  # during the outage
    rate_limited: int  # 429s
    timed_out: int  # answers later than the client's timeout
    resent_events: int  # events central already had, sent again (applied-then-lost)
    goals: dict[str, bool] = field(default_factory=dict)


def simulate(fleet: Fleet) -> Result:
    rng = random.Random(fleet.seed)
    policy_rng = random.Random(fleet.seed + 1)
    lanes = [_Lane(RetryPolicy(fleet.backoff_base_s, fleet.backoff_cap_s, rng=policy_rng,
                               spread_at_cap=fleet.lane_policy_now, paced_429=fleet.lane_policy_now))
             for _ in range(fleet.lanes)]
    head = [0] * fleet.lanes  # central's last applied seq per lane
    sale_rate = fleet.events_per_lane_hour / 3600.0
    down_at, up_at = fleet.warmup_s, fleet.warmup_s + fleet.outage_s
    end = up_at + fleet.after_s
    queue: list[tuple[float, int, int, int, int]] = []  # (time, tiebreak, kind, lane, arg)
    tick = 0
    SALE, PUSH, ANSWER = 0, 1, 2

    def at(t: float, kind: int, lane: int, arg: int = 0) -> None:
        nonlocal tick
        tick += 1
        heapq.heappush(queue, (t, tick, kind, lane, arg))

    for i in range(fleet.lanes):
        at(rng.expovariate(sale_rate), SALE, i)

    central = Admission(fleet.capacity_events_s, window_s=fleet.window_s, headroom=fleet.headroom,
                        request_cost_s=fleet.request_cost_s, paced=fleet.paced)
    windows: dict[int, int] = {}
    stats = {"requests": 0, "refused": 0, "rate_limited": 0, "timed_out": 0, "resent_events": 0}
    undrained = fleet.lanes

    while queue:
        t, _, kind, i, arg = heapq.heappop(queue)
        if t > end or (t > up_at and undrained == 0 and t > up_at + 2 * fleet.rate_window_s + 60):
            break
        lane = lanes[i]
        if kind == SALE:
            lane.created += 1
            at(t + rng.expovariate(sale_rate), SALE, i)
            if not lane.busy:
                lane.busy = True
                at(t + fleet.linger_s, PUSH, i)
            continue
        if kind == PUSH:
            if lane.created == lane.acked:
                lane.busy = False
                continue
            if lane.target is None and t >= up_at:
                lane.target = lane.created  # what it held when central came back (first contact after)
            n = min(fleet.max_events, lane.created - lane.acked)
            stats["requests"] += 1
            window = int(t // fleet.rate_window_s)
            windows[window] = windows.get(window, 0) + 1
            if down_at <= t < up_at:
                stats["refused"] += 1
                at(t, ANSWER, i, -1)
                continue
            retry_after, done_at = central.arrive(i, n, t)
            if retry_after is not None:
                stats["rate_limited"] += 1
                at(t, ANSWER, i, -(10**9 + int(retry_after)))  # 429 with Retry-After: its slot
                continue
            sent_to = lane.acked + n
            stats["resent_events"] += max(0, min(head[i], sent_to) - lane.acked)
            head[i] = max(head[i], sent_to)
            if done_at - t > fleet.client_timeout_s:
                stats["timed_out"] += 1
                at(t + fleet.client_timeout_s, ANSWER, i, -1)
            else:
                at(done_at, ANSWER, i, sent_to)
            continue
        # ANSWER: arg >= 0 acked up to arg; -1 a failure without answer; <= -1e9 a 429 with a slot
        if arg >= 0:
            lane.acked = max(lane.acked, arg)
            lane.policy.succeeded()
            if lane.target is not None and lane.drained_at is None and lane.acked >= lane.target:
                lane.drained_at = t
                undrained -= 1
            pending = lane.created - lane.acked
            if pending == 0:
                lane.busy = False
            else:
                at(t + (0.0 if pending >= fleet.max_events else fleet.linger_s), PUSH, i)
        elif arg == -1:
            at(t + lane.policy.failed(None), PUSH, i)
        else:
            at(t + lane.policy.failed(float(-arg - 10**9), status=429), PUSH, i)
    return _result(fleet, lanes, windows, stats, up_at)


def _result(fleet: Fleet, lanes: list[_Lane], windows: dict[int, int], stats: dict[str, int],
            up_at: float) -> Result:
    w = fleet.rate_window_s
    first_steady, last_steady = int(60 // w) + 1, int(fleet.warmup_s // w) - 1
    steady = [windows.get(k, 0) for k in range(first_steady, last_steady + 1)]
    steady_rate = sum(steady) / (len(steady) * w) if steady else 0.0
    down_at = fleet.warmup_s
    up = [c for k, c in windows.items() if k * w < down_at - w or k * w >= up_at]
    down = [c for k, c in windows.items() if down_at <= k * w < up_at - w]
    peak, outage_peak = max(up, default=0) / w, max(down, default=0) / w
    drains = sorted((lane.drained_at - up_at) for lane in lanes if lane.drained_at is not None)
    starved = sum(1 for lane in lanes if lane.drained_at is None)

    def pct(p: float) -> float | None:
        return round(drains[min(len(drains) - 1, int(p * len(drains)))], 1) if drains else None

    drained = round(drains[-1], 1) if drains and not starved else None
    ratio = round(peak / steady_rate, 2) if steady_rate else math.inf
    result = Result(
        config=asdict(fleet), steady_requests_s=round(steady_rate, 1), peak_requests_s=round(peak, 1),
        peak_over_steady=ratio, outage_peak_requests_s=round(outage_peak, 1),
        outage_peak_over_steady=round(outage_peak / steady_rate, 2) if steady_rate else math.inf,
        backlog_events=sum(lane.target or 0 for lane in lanes),
        drained_s=drained, lane_drain_p50_s=pct(0.5), lane_drain_p99_s=pct(0.99),
        slowest_lane_s=round(drains[-1], 1) if drains else None, starved_lanes=starved, **stats)
    result.goals = {
        "drained_within_10_min": drained is not None and drained <= GOALS["drained_within_s"],
        "peak_at_most_2x_steady": ratio <= GOALS["peak_over_steady_max"],
        "no_lane_starved": starved == 0,
    }
    return result


def before_and_after(lanes: int, capacity: float, seed: int = 1, **overrides: Any) -> dict[str, Result]:
    """The policy before this change (full jitter to a 60 s cap, Retry-After a floor; central
    without admission control), the lanes' new policy alone, central-paced admission alone,
    and both (what lanes now run, with a central that paces)."""
    base = dict(lanes=lanes, capacity_events_s=capacity, seed=seed, **overrides)
    return {
        "before: lanes' old policy, no admission": simulate(
            Fleet(backoff_cap_s=60.0, lane_policy_now=False, paced=False, **base)),
        "lanes' new policy only": simulate(Fleet(paced=False, **base)),
        "central-paced admission only": simulate(
            Fleet(backoff_cap_s=60.0, lane_policy_now=False, paced=True, **base)),
        "after: new policy + central-paced admission": simulate(Fleet(**base)),
    }


def table(runs: dict[str, Result]) -> str:
    """The runs as a text table (the same columns as docs/sync-protocol.md's)."""
    lines = [f"{'policy':<44} {'drained s':>9} {'p99 s':>6} {'steady/s':>8} {'peak/s':>7} {'x':>5} "
             f"{'outage/s':>8} {'x':>5} {'refused':>8} {'429':>6} {'timeouts':>8} {'resent':>8} {'starved':>7}"]
    for name, r in runs.items():
        lines.append(f"{name:<44} {r.drained_s!s:>9} {r.lane_drain_p99_s!s:>6} {r.steady_requests_s:>8} "
                     f"{r.peak_requests_s:>7} {r.peak_over_steady:>5} {r.outage_peak_requests_s:>8} "
                     f"{r.outage_peak_over_steady:>5} {r.refused:>8} {r.rate_limited:>6} {r.timed_out:>8} "
                     f"{r.resent_events:>8} {r.starved_lanes:>7}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/fleet.json")
    parser.add_argument("--lanes", type=int, default=20_000)
    parser.add_argument("--capacity", type=float, default=None,
                        help="central's ingestion, events/s (default: accepted_events_s of bench/central.json)")
    parser.add_argument("--central-report", default="bench/central.json")
    args = parser.parse_args()
    capacity, source = args.capacity, "--capacity"
    if capacity is None:
        report = Path(args.central_report)
        if report.exists():
            capacity, source = json.loads(report.read_text())["central"]["accepted_events_s"], str(report)
        else:
            capacity, source = Fleet.capacity_events_s, "default (no central bench report)"
    runs = before_and_after(args.lanes, capacity)
    doc = {"lanes": args.lanes, "capacity_events_s": capacity, "capacity_from": source,
           "events_per_lane_hour": EVENTS_PER_LANE_HOUR, "goals": GOALS,
           "runs": {name: asdict(r) for name, r in runs.items()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
