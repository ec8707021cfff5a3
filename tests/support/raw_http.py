"""One request written byte for byte on its own connection, for what an HTTP client library will not send
(a malformed Content-Length, two of them); the answer read until the server closes."""

from __future__ import annotations

import socket


def raw_request(base_url: str, request: bytes, timeout: float = 10) -> tuple[bytes, bytes]:
    """(the answer's head, its body) to ``request`` sent to ``base_url`` (http://host:port)."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body
