"""The pure parts of issue 25's HTTP bullets: the body budget, connection slots, the summarised refusals,
and the sans-IO parser stopping at a request's head until it is admitted."""

from __future__ import annotations

from flipedit_previewd.common.rejections import EXAMPLES, ClientErrors
from flipedit_previewd.http.access import Peer, client_key
from flipedit_previewd.http.intake import BodyBudget, ConnectionSlots
from flipedit_previewd.http.protocol import Head, HTTPConnection, Limits, Request
from tests.support.helpers import Recorder


def test_the_head_comes_first_and_no_body_byte_is_kept_until_it_is_admitted() -> None:
    http = HTTPConnection(Limits())
    http.receive(b"PUT /timeline HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    head = http.next_event()
    assert (
        isinstance(head, Head) and head.body_length == 5 and head.request.method == "PUT" and head.request.body == b""
    )
    assert http.next_event() is None and http.next_event() is None  # not admitted: the body is not read
    http.admit()
    request = http.next_event()
    assert isinstance(request, Request) and request.body == b"hello"
    chunked = HTTPConnection(Limits())
    chunked.receive(b"PUT /timeline HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    head = chunked.next_event()
    assert isinstance(head, Head) and head.body_length is None
    plain = HTTPConnection(Limits())
    plain.receive(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    head = plain.next_event()
    assert isinstance(head, Head) and head.body_length == 0


def test_body_budget_charges_and_gives_back() -> None:
    budget = BodyBudget(10)
    assert not budget.fits_ever(11) and budget.fits_ever(10)
    assert budget.reserve(6) and not budget.reserve(5) and budget.reserve(4)
    budget.release(6)
    assert budget.used == 4 and budget.reserve(6) and budget.refused == 1


def test_slots_close_the_oldest_silent_connection_first_then_the_longest_idle() -> None:
    busy: set[str] = set()
    slots: ConnectionSlots[str] = ConnectionSlots(4, 10, lambda c: c not in busy)
    for name in ("editor", "pool", "a", "b"):
        assert slots.make_room("loopback") == []
        slots.opened(name, "loopback")
    for name in ("editor", "pool"):
        slots.spoke(name)
        slots.rested(name)
    # Full: the oldest connection that never sent a byte goes first, never the editor's that have spoken.
    assert slots.make_room("loopback") == ["a"]
    slots.opened("c", "loopback")
    assert slots.make_room("loopback") == ["b"]
    slots.opened("d", "loopback")
    slots.spoke("c")
    slots.spoke("d")
    busy.update({"c", "d", "editor"})  # in the middle of a request: never closed
    assert slots.make_room("loopback") == ["pool"]  # the longest idle
    slots.opened("e", "loopback")
    slots.spoke("e")
    busy.add("e")
    assert slots.make_room("loopback") is None  # every slot busy with a request: refuse the new one
    busy.discard("editor")
    slots.rested("editor")
    assert slots.make_room("loopback") == ["editor"] and len(slots) == 3 and slots.evicted == 4


def test_one_client_holds_at_most_its_share_of_silent_connections() -> None:
    slots: ConnectionSlots[int] = ConnectionSlots(100, 3, lambda c: True)
    for n in range(3):
        assert slots.make_room("uid 1000") == []
        slots.opened(n, "uid 1000")
    assert slots.make_room("loopback") == []  # another client is not charged for it
    slots.opened(10, "loopback")
    assert slots.make_room("uid 1000") == [0]  # its own oldest silent connection makes room
    slots.opened(3, "uid 1000")
    slots.spoke(1)  # one speaks: below the share again
    assert slots.make_room("uid 1000") == []
    assert len(slots) == 4


def test_client_key_groups_all_of_loopback_and_keeps_uids_apart() -> None:
    assert {client_key(Peer("tcp", f"127.0.{n}.{n}")) for n in range(1, 200)} == {"loopback"}
    assert client_key(Peer("tcp", "::1")) == client_key(Peer("tcp", "::ffff:127.0.0.9")) == "loopback"
    assert client_key(Peer("tcp", "192.0.2.7")) == "192.0.2.7"
    assert client_key(Peer("unix", "uid 1000", 1000)) != client_key(Peer("unix", "uid 1001", 1001))


def test_client_errors_journal_once_per_kind_and_status_and_count_everything() -> None:
    log = Recorder()
    errors = ClientErrors(log)
    for n in range(1000):
        errors.note(
            400 + n % 3, f"bad request {n} from 127.0.{n % 250}.1", "protocol_error", CLIENT=f"127.0.{n % 250}.1"
        )
        errors.note(421, f"misdirected {n}", "access_denied")
        errors.note(404, f"no such endpoint {n}")  # a route's 4xx: counted, never journaled on its own
    assert [e[2]["STATUS"] for e in log.events] == [400, 421, 401, 402]
    counts, examples, last = errors.take()
    assert counts == {400: 334, 401: 333, 402: 333, 421: 1000, 404: 1000}
    assert all(len(seen) == EXAMPLES for seen in examples.values()) and last[404] == "no such endpoint 999"
    errors.note(400, "again", "protocol_error")  # a new minute: journaled again
    assert len(log.events) == 5 and errors.total[400] == 335
