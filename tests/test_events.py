"""Event ids are monotonic across restarts; replay covers what a client missed."""

import asyncio
import copy
import json
import sys
import threading
import tracemalloc

import pytest

from posd.lane.events import BOOT_SHIFT, EventBus


def test_ids_monotonic_within_and_across_boots():
    first = EventBus(boot=1)
    a = [first.publish("scan", {}).id for _ in range(3)]
    second = EventBus(boot=2)
    b = second.publish("scan", {}).id
    assert a == sorted(a) and b > a[-1]
    assert b >> BOOT_SHIFT == 2


def test_replay_after_last_event_id():
    bus = EventBus(boot=1, ring_size=5)
    ids = [bus.publish("scan", {"n": i}).id for i in range(3)]
    missed, covered = bus.replay_after(ids[0])
    assert [e.id for e in missed] == ids[1:] and covered


def test_replay_reports_a_gap_the_ring_no_longer_covers():
    bus = EventBus(boot=1, ring_size=5)
    ids = [bus.publish("scan", {"n": i}).id for i in range(20)]
    missed, covered = bus.replay_after(ids[2])
    assert not covered
    assert [e.id for e in missed] == ids[-5:]
    _, covered_other_boot = bus.replay_after((0 << BOOT_SHIFT) + 7)
    assert not covered_other_boot


def test_an_id_this_lane_never_gave_is_not_covered():
    """A Last-Event-ID past the newest event (a client's bug, a lane restored from a copy) would have
    the stream skip every event up to it in silence: it is a gap, told by stream.reset."""
    bus = EventBus(boot=1, ring_size=5)
    ids = [bus.publish("scan", {"n": i}).id for i in range(3)]
    assert bus.replay_after(ids[-1]) == ([], True)  # up to date
    missed, covered = bus.replay_after(ids[-1] + 3)
    assert (missed, covered) == ([], False)
    assert not EventBus(boot=1).replay_after((1 << BOOT_SHIFT) + 1)[1]  # nothing given yet this boot


def test_events_published_together_reach_the_loop_in_one_handoff_in_order():
    """A scan and the member it found, from a device thread: consecutive ids, one wake-up of
    the loop, and every subscriber gets both in order (a full one is dropped, not blocked)."""
    import asyncio

    async def main():
        loop = asyncio.get_running_loop()
        bus = EventBus(boot=1)
        bus.bind(loop)
        q, small = bus.subscribe(), bus.subscribe(maxsize=1)
        handoffs = []
        real = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda *a: (handoffs.append(a[0]), real(*a))[1]
        made = await asyncio.to_thread(bus.publish_many,  # from another thread, as a device publishes
                                       [("scan", {"kind": "code"}), ("member.unknown", {"identifier": "X"})])
        got = [await asyncio.wait_for(q.get(), 5), await asyncio.wait_for(q.get(), 5)]
        assert [e.type for e in got] == ["scan", "member.unknown"]
        assert [e.id for e in got] == [e.id for e in made] and made[1].id == made[0].id + 1
        assert handoffs.count(bus._fan_out) == 1
        assert not bus.is_subscribed(small) and bus.is_subscribed(q)
        with pytest.raises(ValueError):
            bus.publish_many([("scan", {}), ("no.such", {})])
        assert bus.published == 2  # nothing of a refused batch was published

    asyncio.run(main())


def test_events_from_racing_threads_reach_the_loop_in_the_order_of_their_ids():
    """Ids were given under the bus's lock and handed to the loop after it: a thread could hand its
    later id over first, and a stream, which sends each id once and rising, skipped the earlier one."""
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    bus = EventBus(boot=1)
    bus.bind(loop)
    queue = asyncio.run_coroutine_threadsafe(_subscribe(bus), loop).result(5)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads change hands as often as they can
    try:
        def publish(n: int) -> None:
            for _ in range(300):
                bus.publish("device.status", {"device": f"d{n}", "state": "idle"})

        threads = [threading.Thread(target=publish, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        publish(4)  # and the loop's own thread's neighbour, this one
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    got = asyncio.run_coroutine_threadsafe(_drain(queue, 1500), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    runner.join(5)
    loop.close()
    assert got == sorted(got) and len(got) == 1500


async def _subscribe(bus: EventBus) -> asyncio.Queue:
    return bus.subscribe(maxsize=10_000)


async def _drain(queue: asyncio.Queue, n: int) -> list[int]:
    return [(await queue.get()).id for _ in range(n)]


def test_sse_framing():
    bus = EventBus(boot=1)
    frame = bus.publish("member.unknown", {"identifier": "X"}).sse().decode()
    assert frame.startswith(f"id: {(1 << BOOT_SHIFT) + 1}\nevent: member.unknown\ndata: {{")
    assert frame.endswith("\n\n")


def test_an_event_is_sent_as_published_even_if_its_data_changes_after():
    bus = EventBus(boot=1)
    data = {"identifier": "X", "reasons": ["a"]}
    event = bus.publish("member.unknown", data)
    data["reasons"].append("b")
    data["identifier"] = "Y"
    assert event.data == {"identifier": "X", "reasons": ["a"]}
    assert json.loads(event.sse().decode().split("data: ", 1)[1]) == {
        "type": "member.unknown", "at": event.at, "identifier": "X", "reasons": ["a"]}
    empty = bus.publish("stream.reset", {})
    assert json.loads(empty.sse().decode().split("data: ", 1)[1]) == {"type": "stream.reset", "at": empty.at}


def test_the_replay_ring_holds_frames_not_the_data_behind_them():
    """10,000 member views in the ring: their frames' bytes, not several times that in dicts."""
    view = {"member": {"member_id": "M0000123", "display_name": "Anna K.",
                       "balances": {c: {"confirmed": 1234, "pending": 50, "expiring": [{"points": 10}]}
                                    for c in ("points", "tier", "stamps")},
                       "rewards_available": [{"reward_id": f"r{i}", "name": "Free coffee", "points": 400}
                                             for i in range(4)]},
            "identified_by": "card"}
    bus = EventBus(boot=1, ring_size=2000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(2000):
            bus.publish("member.identified", copy.deepcopy(view))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    frames = sum(len(e.sse()) for e in bus._ring)
    assert held < 1.6 * frames, (held, frames)


def test_every_event_type_has_its_data_schema_in_the_openapi():
    from typing import get_args

    from posd.api.app import create_app
    from posd.api.models import StreamEvent
    from posd.lane.events import EVENT_TYPES

    modelled = {get_args(m.model_fields["type"].annotation)[0] for m in get_args(get_args(StreamEvent)[0])}
    assert modelled == set(EVENT_TYPES)
    app = create_app(lane=None, bus=None, token="t", host="127.0.0.1", port=1, health=dict)
    stream = app.openapi()["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]
    item = stream["itemSchema"]["properties"]
    assert item["event"]["enum"] == list(EVENT_TYPES)
    refs = {one["$ref"].rsplit("/", 1)[1] for one in item["data"]["contentSchema"]["oneOf"]}
    assert refs == {m.__name__ for m in get_args(get_args(StreamEvent)[0])}
    assert refs <= set(app.openapi()["components"]["schemas"])
    with pytest.raises(ValueError, match="unknown event type"):
        EventBus(1).publish("member.found", {})
