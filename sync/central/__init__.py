"""The reference central: a receiver for development, demos and tests.

- ``server``: the HTTP server (protocol routes, admin routes, fault injection);
- ``store``: the store interface the server talks to; ``store_sqlite`` its SQLite engine;
- ``lots``: the lot engine (credits, debits, expiry); ``members``: member shapes and tiers;
- ``migrations``: the SQLite schema; ``seed``: the seed file; ``faults``: the fault plan;
- ``cli``: ``posd central`` (also ``python -m posd.sync.central``).

Only the protocol (``posd.sync.protocol``) is shared with the lane; nothing
here imports the lane's side, the daemon or its API, and nothing of the lane
imports this.
"""
