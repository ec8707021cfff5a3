"""The conformance kit: ``posd conformance`` proves a central implements the sync protocol.

It speaks the protocol only (posd.sync.protocol and HTTP): it imports no
code of the reference central and none of the lane's, so what it checks is
what docs/sync-protocol.md says, against any endpoint.

- ``http``: a signed client that can also sign wrongly, and remembers every
  429 it met;
- ``kit``: the checks' registry, the context they share, the runner and the
  report (a pass/fail table or JSON);
- ``checks_*``: one module per group of checks (auth, push, members,
  program, burn authorisation, member tokens, birthday claims, rate limits). A group is a module of ``@check`` functions listed
  in ``kit.GROUPS``: adding one is a small addition.
- ``cli``: ``posd conformance``.

The kit writes: it pushes events under the lane it is given (continuing
that lane's history from central's ``GET /v1/lanes`` head), enrols members
of its own (``member_enrolled``) and moves their points. Run it against a
test store and lane, never a real till's.
"""
