"""The lane's side of sync: the signed client, the outbox relay, the member and program puller.

It speaks the protocol (``posd.sync.protocol``) and reaches storage only
through the ports (``posd.sync.lane.ports``); it never imports the reference
central.
"""
