"""Response bodies: JSON responses, StandardResponse entries, and the clean batch's
StandardResponse written as text (the submit fast path)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from dipsim.app._ids import ID_MASK, ID_PREFIX
from dipsim.envelope import MSG_SCHEMA_FAILURE, MSG_SUCCESS, SUR_PATTERN


def dip_timestamp(when: datetime | None = None) -> str:
    """``2026-03-01T09:30:00+00:00`` (25 characters, DT-003)."""
    return (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def _conforming(value: Any, low: int, high: int) -> str | None:
    """``value`` when it is a string of ``low..high`` characters, else None (the response
    schemas make these fields nullable strings of bounded length)."""
    return value if isinstance(value, str) and low <= len(value) <= high else None


def _conforming_sur(value: Any) -> str | None:
    return (
        value if isinstance(value, str) and SUR_PATTERN.match(value) and len(value) <= 200 else None
    )


def entry(
    dip_id: str,
    message: str,
    help_: str | None = None,
    *,
    transaction_id: str | None = None,
    sur: Any = None,
    correlation: Any = None,
    recipient: str | None = None,
    dcp: Any = None,
    ts: str | None = None,
) -> dict[str, Any]:
    """One StandardResponse ``messageArray`` entry sent by the DIP (``dip_id``).

    Values from the request are echoed only where they conform to the response schema
    (StandardResponseBodyType): a rejected message's malformed reference or id becomes null.
    """
    return {
        "transactionID": _conforming(transaction_id, 1, 65),
        "senderUniqueReference": _conforming_sur(sur),
        "correlationID": _conforming(correlation, 1, 60),
        "sentTimestamp": ts or dip_timestamp(),
        "senderID": dip_id,
        "recipientID": _conforming(recipient, 10, 10),
        "DIPConnectionProviderID": _conforming(dcp, 10, 10),
        "message": _conforming(message, 1, 200),
        "help": None if help_ is None else help_[:500] or None,
        "serviceTicketURL": None,
    }


def standard_response(entries: list[dict[str, Any]], ts: str, status: int) -> web.Response:
    return json_response({"messageArray": entries, "timestamp": ts}, status)


def bad_request(
    dip_id: str, help_: str, recipient: str | None = None, status: int = 400
) -> web.Response:
    """A StandardResponse with one MSG1001 entry saying what is wrong with the request."""
    return standard_response(
        [entry(dip_id, MSG_SCHEMA_FAILURE, help_[:500], recipient=recipient)],
        dip_timestamp(),
        status,
    )


def json_texts(values: list[Any]) -> list[str]:
    """Each value as JSON text. Correlation and DCP ids are usually all null: then it is one
    list multiplication, no call per message."""
    if values.count(None) == len(values):
        return ["null"] * len(values)
    return [orjson.dumps(v).decode() for v in values]


#: Pieces of JSON text per entry in :func:`success_response`.
_PIECES_PER_ENTRY = 8
#: A transaction id's counter is 12 hex digits: 9 that change every 4096 ids, then 3 from here.
_LOW_HEX = [f"{low:03x}" for low in range(4096)]


def success_response(
    base: int,
    surs: list[str],
    correlations: list[str],
    dcps: list[str],
    dip_id_json: str,
    sender_json: str,
    ts: str,
) -> bytes:
    """The all-MSG0000 StandardResponse of a clean batch whose transaction ids are
    ``transaction_id(base + i)``: byte for byte what ``orjson.dumps`` writes for the general
    path's entries.

    The entries differ only in a few values, so the text is laid out as one list of pieces:
    constant pieces by list multiplication, the values by slice assignment, then a single join;
    no string or dict per message. Even a transaction id is two shared pieces: its first 9
    counter digits (the same for up to 4096 consecutive ids) end the piece before it, the last
    3 come from ``_LOW_HEX``. The envelope schema limits references to ``[A-Za-z0-9-]`` and the
    ids are hex, so they need no escaping; ``correlations`` and ``dcps`` are JSON text already
    (:func:`json_texts`).
    """
    count = len(surs)
    k = _PIECES_PER_ENTRY
    head = '{"transactionID":"' + ID_PREFIX
    tail = f',"message":"{MSG_SUCCESS}","help":null,"serviceTicketURL":null}}'
    parts: list[str] = [""] * (k * count)
    index = 0
    while index < count:  # runs of ids sharing their first 9 counter digits
        high, low = divmod((base + index) & ID_MASK, 4096)
        run = min(count - index, 4096 - low)
        parts[k * index : k * (index + run) : k] = [f"{tail},{head}{high:09x}"] * run
        parts[k * index + 1 : k * (index + run) : k] = _LOW_HEX[low : low + run]
        index += run
    parts[0] = '{"messageArray":[' + parts[0][len(tail) + 1 :]  # no entry before the first
    parts[2::k] = ['","senderUniqueReference":"'] * count
    parts[3::k] = surs
    parts[4::k] = ['","correlationID":'] * count
    parts[5::k] = correlations
    parts[6::k] = [
        f',"sentTimestamp":"{ts}","senderID":{dip_id_json}'
        f',"recipientID":{sender_json},"DIPConnectionProviderID":'
    ] * count
    parts[7::k] = dcps
    parts.append(f'{tail}],"timestamp":"{ts}"}}')
    return "".join(parts).encode()
