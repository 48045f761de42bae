"""The trust-boundary rules without sockets: escaping, the request guard, media roots, defensive numbers."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from flipedit_previewd.common.errors import Forbidden, Misdirected, Unauthorized
from flipedit_previewd.common.journal import MESSAGE_IDS
from flipedit_previewd.common.rejections import ClientErrors
from flipedit_previewd.common.textsafe import escape, is_safe_token
from flipedit_previewd.common.token import read_token, write_token
from flipedit_previewd.ctl.journal_read import event_of, number, short_line
from flipedit_previewd.ctl.stats import summarise
from flipedit_previewd.http.access import Guard, Peer
from flipedit_previewd.http.protocol import Request
from flipedit_previewd.timeline.safety import effective_roots
from flipedit_previewd.worker.media import MediaError, open_media
from tests.support.helpers import Recorder


def test_escape_one_line_no_controls_bounded() -> None:
    text = escape("a\nb\r\x1b[2J\x07\x7f\x9b\u2028\u202e\\x", 1000)
    assert text == "a\\x0ab\\x0d\\x1b[2J\\x07\\x7f\\x9b\\u2028\\u202e\\\\x"
    assert text.isprintable()
    assert escape("é ok / ü") == "é ok / ü"
    assert escape("x" * 50, 10) == "x" * 10 + "...[40 more]"
    assert (
        is_safe_token("abc-123_Z.4")
        and not is_safe_token("caf\xe9")
        and not is_safe_token("a b")
        and not is_safe_token("")
    )


def req(method: str = "GET", path: str = "/health", **headers: str) -> Request:
    return Request(method, path, {k.lower().replace("_", "-"): v for k, v in headers.items()})


TCP = Peer("tcp", "127.0.0.1", local_port=8081)


def test_guard_host_origin_fetch_site() -> None:
    guard = Guard([], "tok", ClientErrors(Recorder()).note, own_uid=1000)
    for host in ("127.0.0.1:8081", "localhost:8081", "[::1]:8081", "LOCALHOST:8081"):
        guard.check(req(host=host), TCP)
    for host in ("rebind.example:8081", "127.0.0.1:8082", "127.0.0.1", "", "127.0.0.1:8081, evil"):
        with pytest.raises(Misdirected):
            guard.check(req(host=host), TCP)
    guard.check(Request("GET", "/health", {}), TCP)  # HTTP/1.0 without Host (h11 refuses 1.1 without: test_protocol)
    guard.check(req(host="anything"), Peer("unix", "uid 1000", 1000))  # any Host on the unix socket
    with pytest.raises(Forbidden):
        guard.check(req(host="127.0.0.1:8081", origin="null"), TCP)
    with pytest.raises(Forbidden):
        guard.check(req(host="127.0.0.1:8081", sec_fetch_site="same-site"), TCP)
    guard.check(req(host="127.0.0.1:8081", sec_fetch_site="none"), TCP)
    Guard(["preview.local:8081"], "", ClientErrors(Recorder()).note).check(req(host="preview.local:8081"), TCP)


def test_only_the_daemons_own_page_passes_as_a_web_page() -> None:
    """The viewer's same-origin GETs pass; another origin, a rebound or allowed_hosts name, a state change do not."""
    guard = Guard(["*"], "tok", ClientErrors(Recorder()).note, own_uid=1000)
    guard.check(req(host="127.0.0.1:8081", sec_fetch_site="same-origin"), TCP)
    guard.check(req(host="localhost:8081", sec_fetch_site="same-origin", origin="http://localhost:8081"), TCP)
    refused = [
        req(host="127.0.0.1:8081", sec_fetch_site="same-origin", origin="http://127.0.0.1:3000"),  # another port's page
        req(host="127.0.0.1:8081", sec_fetch_site="same-site"),
        req(host="127.0.0.1:8081", sec_fetch_site="cross-site"),
        req(
            host="rebind.example:8081", sec_fetch_site="same-origin"
        ),  # only with allowed_hosts "*": still not its page
        req("DELETE", "/timeline", host="127.0.0.1:8081", sec_fetch_site="same-origin"),
        req(host="127.0.0.1:9999", sec_fetch_site="same-origin"),
    ]
    for request in refused:
        with pytest.raises((Forbidden, Unauthorized)):
            guard.check(request, TCP)
    with pytest.raises(Forbidden):
        guard.check(req(host="anything", sec_fetch_site="same-origin"), Peer("unix", "uid 1000", 1000))


def test_guard_owner_only_changes() -> None:
    log = Recorder()
    errors = ClientErrors(log)
    guard = Guard([], "s3cret", errors.note, own_uid=1000)
    put = {"host": "127.0.0.1:8081"}
    with pytest.raises(Unauthorized):
        guard.check(Request("PUT", "/timeline", put), TCP)
    with pytest.raises(Forbidden):
        guard.check(Request("DELETE", "/timeline", {**put, "authorization": "Bearer nope"}), TCP)
    guard.check(Request("PUT", "/timeline", {**put, "authorization": "Bearer s3cret"}), TCP)
    guard.check(Request("PUT", "/timeline", {}), Peer("unix", "uid 1000", 1000))
    with pytest.raises(Forbidden):
        guard.check(Request("PUT", "/timeline", {}), Peer("unix", "uid 1001", 1001))
    with pytest.raises(Forbidden):
        guard.check(Request("PUT", "/timeline", {}), Peer("unix", "uid None", None))
    guard.check(Request("DELETE", "/get_frame/1", put), TCP)  # not a state-changing endpoint: routing answers 405
    # Four refusals from three clients: counted each, journaled once per status per minute, whoever sent them.
    assert guard.refused == 4 and errors.counts == {401: 1, 403: 3}
    assert sorted((e[2]["STATUS"], e[2]["CLIENT"]) for e in log.events if e[0] == "access_denied") == [
        (401, "127.0.0.1"),
        (403, "127.0.0.1"),
    ]
    with pytest.raises(Forbidden):  # no token written: TCP can never change state
        Guard([], "", errors.note, own_uid=1000).check(
            Request("PUT", "/timeline", {**put, "authorization": "Bearer "}), TCP
        )


def test_token_file_is_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "run" / "flipedit-preview" / "token"
    token = write_token(str(path))
    assert os.stat(path).st_mode & 0o777 == 0o600 and len(token) >= 40
    assert read_token({"XDG_RUNTIME_DIR": str(tmp_path / "run")}) == token
    os.chmod(path, 0o644)  # readable by others: not trusted
    assert read_token({"XDG_RUNTIME_DIR": str(tmp_path / "run")}) == ""


def test_effective_roots_skip_root_system_and_home(tmp_path: Path) -> None:
    home = str(tmp_path / "home" / "me")
    os.makedirs(home)
    kept, skipped = effective_roots(
        ["/", "/etc", "/usr/lib/x", home, str(tmp_path / "home"), f"{home}/Videos", "rel"], home
    )
    assert kept == [f"{home}/Videos"]
    assert [s[0] for s in skipped] == ["/", "/etc", "/usr/lib/x", home, str(tmp_path / "home"), "rel"]


def test_open_media_checks_what_was_opened(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "ok.bin").write_bytes(b"x")
    (tmp_path / "secret.bin").write_bytes(b"s")
    (root / "link.bin").symlink_to(tmp_path / "secret.bin")
    os.mkfifo(root / "fifo.bin")
    roots = (str(root),)
    with open_media(str(root / "ok.bin"), roots) as handle:
        assert handle.read() == b"x"
    for name, problem in (
        ("link.bin", "outside the allowed media roots"),
        ("fifo.bin", "not a regular file"),
        ("missing.bin", "file not found"),
    ):
        with pytest.raises(MediaError, match=problem):
            open_media(str(root / name), roots)
    with pytest.raises(MediaError, match="outside"):
        open_media(str(root / ".." / "secret.bin"), roots)


def entry(event: str, **fields: Any) -> dict[str, Any]:
    return {"MESSAGE_ID": MESSAGE_IDS[event], "__REALTIME_TIMESTAMP": datetime(2026, 1, 1, 10, 0), **fields}


def test_journal_numbers_and_events_defensive() -> None:
    assert (
        number({"X": "nan"}, "X") is None and number({"X": "inf"}, "X") is None and number({"X": "lots"}, "X") is None
    )
    assert number({"X": "12.5"}, "X") == 12.5
    assert event_of({"EVENT": "start"}) == ""  # only a known MESSAGE_ID names an event
    summary = summarise(
        [
            entry("request", OUTCOME="rendered", TOTAL_MS="nan", QUEUE_MS="inf", RENDER_MS="3"),
            entry("summary", COUNT_CACHED="lots", COUNT_HEALTH="2"),
            {"EVENT": "start", "MESSAGE": "forged"},
        ]
    )
    assert summary["total_ms"]["count"] == 0 and summary["render_ms"]["p50"] == 3.0
    assert summary["outcomes"] == {"health": 2, "rendered": 1}
    assert summary["starts"] == 0 and summary["ignored_fields"] == 3
    line = short_line(entry("media_problem", MESSAGE="bad\n00:00 ERR forged\x1b[2J", _PID="1"))
    assert "\n" not in line and "\x1b" not in line and "bad\\x0a00:00 ERR forged\\x1b[2J" in line
