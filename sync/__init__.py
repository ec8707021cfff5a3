"""Sync between a lane and central, in three parts that import one way:

- ``posd.sync.protocol``: the wire protocol both sides share (pure, stdlib only);
- ``posd.sync.lane``: the lane's side (client, relay, puller, the ports storage implements);
- ``posd.sync.central``: the reference central (server, store, lots, migrations,
  faults, seed), used by ``posd central`` and the tests, never by the lane.
"""
