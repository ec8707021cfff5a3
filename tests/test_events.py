"""Event ids are monotonic across restarts; replay covers what a client missed."""

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


def test_sse_framing():
    bus = EventBus(boot=1)
    frame = bus.publish("member.unknown", {"identifier": "X"}).sse().decode()
    assert frame.startswith(f"id: {(1 << BOOT_SHIFT) + 1}\nevent: member.unknown\ndata: {{")
    assert frame.endswith("\n\n")
