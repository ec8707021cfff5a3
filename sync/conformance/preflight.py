"""Before any check: does the central answer, and does it accept the kit's credentials?

A kit that is itself misconfigured (a wrong secret or store, a wrong URL, a
central that is down, a clock far off) would otherwise make checks fail one
after another for a reason that is not the central's conformance. One signed
``GET /v1/lanes/{store}/{lane}`` (the lane's head, which every lane asks
first) tells them apart: the checks run only when it is answered 200.
"""

from __future__ import annotations

import requests

from posd.sync.conformance.http import Answer, KitClient

# What each refusal means for the person running the kit, and what to check.
REFUSALS = {
    "bad_signature": "the signature did not verify: --secret-file is not store {store}'s secret at this central",
    "missing_signature": "central saw no signature: a proxy in front of it may drop the X-Posd-* headers",
    "stale_timestamp": "the signature is right but this machine's clock is over 300 s off central's: set the clock "
                       "(NTP)",
    "unknown_store": "central does not know store {store}: check --store",
    "store_mismatch": "central refused store {store} for these credentials: check --store and --secret-file",
    "lane_mismatch": "central refused lane {lane} for store {store}: check --lane",
}


class SetupError(Exception):
    """The kit cannot judge this central: nothing answered, or the credentials were refused."""

    def __init__(self, what: str, check: str, detail: str = "") -> None:
        super().__init__(f"{what}; {check}")
        self.what, self.check, self.detail = what, check, detail


def preflight(client: KitClient) -> str:
    """The lane head's answer in a few words, or SetupError saying what was refused and what to check."""
    path = f"GET {client.base_url}/v1/lanes/{client.store_id}/{client.lane_id}"
    try:
        answer = client.lane_head()
    except requests.exceptions.SSLError as exc:
        raise SetupError(f"central's TLS certificate was not accepted ({path})",
                         "check --central's host name, or give its CA with --ca-file", _reason(exc)) from exc
    except requests.Timeout as exc:
        raise SetupError(f"central did not answer within {client.timeout:g} s ({path})",
                         "check that central runs and --central is right, or raise --timeout", _reason(exc)) from exc
    except requests.ConnectionError as exc:
        raise SetupError(f"central could not be reached ({path})",
                         "check --central (scheme, host, port, prefix), that central runs, and the network",
                         _reason(exc)) from exc
    except requests.RequestException as exc:
        raise SetupError(f"the request to central failed ({path})", "check --central", _reason(exc)) from exc
    return _judge(client, answer, path)


def _judge(client: KitClient, answer: Answer, path: str) -> str:
    code = answer.code
    if answer.status == 200:
        return "central answers and accepts the kit's credentials"
    if answer.status in (401, 403):
        hint = REFUSALS.get(code or "", "check --store, --lane, --secret-file and this machine's clock")
        raise SetupError(f"central refused the kit's credentials: HTTP {answer.status} {code or '(no code)'}",
                         hint.format(store=client.store_id, lane=client.lane_id), path)
    if answer.status == 404:
        raise SetupError(f"central answered 404 {code or '(no code)'} to the lane head ({path})",
                         "check that --central is the sync API's base URL, with its path prefix if it has one")
    if answer.status == 429:
        raise SetupError("central is rate limiting the kit (429) and asked it to wait "
                         f"{answer.headers.get('Retry-After') or '(no Retry-After)'}", "run the kit again later",
                         path)
    if answer.status >= 500 or answer.status == 408:
        raise SetupError(f"central is not serving: HTTP {answer.status} {code or ''}".rstrip() + f" ({path})",
                         "check central's own health and logs, then run the kit again")
    raise SetupError(f"central answered HTTP {answer.status} {code or ''}".rstrip() + f" to the lane head ({path})",
                     "the protocol's lane head answers 200: check --central, --store and --lane")


def _reason(exc: BaseException) -> str:
    """The innermost cause in one short line (not urllib3's whole repr)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc.args[-1] if getattr(exc, "args", None) else exc)
    return f"{type(exc).__name__}: {text}"[:200]
