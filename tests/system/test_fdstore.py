"""Restarts that keep the editor's connections (systemd's fd store), and the drain without it, under real systemd.

The client is the editor's way of talking (tests/support/editor_client.py): pooled keep-alive
connections, no retry. Figures are printed (pytest -s) for the README.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from typing import Any

import pytest
import urllib3

from flipedit_previewd.common.journal import MESSAGE_IDS
from tests.support.editor_client import EditorPool, peer_closed
from tests.support.helpers import failpoint, wait_for
from tests.support.sandbox import USER_UNIT_DIR
from tests.system.deploy import UNIT, Deployed, wait_active


def started(d: Deployed) -> None:
    urllib3.PoolManager(retries=False).request("GET", d.url + "/health", timeout=30)
    wait_active(d)


def n_stored(d: Deployed) -> int:
    return int(d.show("NFileDescriptorStore")["NFileDescriptorStore"])


def established(d: Deployed) -> list[str]:
    """The daemon's side of TCP connections on the test port (ss sees the shared network namespace)."""
    out = d.box.run("ss", "-Htn", "state", "established", f"( sport = :{d.port} )", check=False).stdout
    return [line for line in out.splitlines() if line.strip()]


def restart_20_times(d: Deployed) -> tuple[Any, list[float], set[int]]:
    """The editor's pool (4 connections, no retry, every 50 ms each; every URL a new render) through 20 restarts."""
    started(d)
    pool = EditorPool(
        "127.0.0.1", d.port, connections=4, interval=0.05, path=lambda n: f"/get_frame/{n % 100}?width={100 + n % 997}"
    ).start()
    time.sleep(0.5)
    pids = {d.main_pid()}
    restart_s = []
    for _ in range(20):
        t0 = time.monotonic()
        d.box.systemctl("restart", UNIT)
        restart_s.append(time.monotonic() - t0)
        pids.add(d.main_pid())
        time.sleep(0.1)
    time.sleep(0.5)
    report = pool.stop()
    pool.close()
    return report, restart_s, pids


def test_20_restarts_keep_every_pooled_connection(deployed: Any) -> None:
    # Renders take at least 20 ms and every URL is new (no cache hits), so requests are in flight when SIGTERM comes.
    d = deployed(env=failpoint("sleep:0.02"))
    report, restart_s, pids = restart_20_times(d)
    handed = [int(e.get("HANDED_OVER", 0)) for e in d.journal(MESSAGE_ID=MESSAGE_IDS["stopped"])]
    resumed = [int(e.get("RESUMED_CONNECTIONS", 0)) for e in d.journal(MESSAGE_ID=MESSAGE_IDS["ready"])]
    in_flight = [int(e.get("BACKLOG", 0)) for e in d.journal(MESSAGE_ID=MESSAGE_IDS["stopping"])]
    print(
        f"\n[fdstore] 20 restarts, 4 pooled connections, no retry: {report.summary()}, "
        f"restart_s max={max(restart_s):.2f} median={sorted(restart_s)[10]:.2f}, handed_over={handed}, "
        f"resumed={resumed}, "
        f"renders in flight at SIGTERM={in_flight}"
    )
    assert len(pids) == 21  # really 20 new processes
    assert report.failures == []
    assert report.reconnects == 0 and report.closed_by_server == 0 and report.final_ports == report.initial_ports
    assert report.answers > 20 * 4
    assert len(report.servers) >= 15  # the same connections were answered by the later instances
    assert handed.count(4) == 20 and resumed[1:].count(4) == 20
    assert sum(in_flight) > 0  # some restarts came while renders were under way: answered, then handed over
    assert n_stored(d) == 0  # a running daemon holds its connections itself: the store is empty


def test_20_restarts_without_the_store_close_cleanly(deployed: Any) -> None:
    """fdstore = false: no connection survives, but each is closed by a Connection: close answer, never under a "
    "request."""
    d = deployed(env={**failpoint("sleep:0.02"), "FLIPEDIT_PREVIEWD_FDSTORE": "false"})
    report, restart_s, pids = restart_20_times(d)
    print(
        f"\n[fdstore] fdstore=false, 20 restarts, 4 pooled connections, no retry: {report.summary()}, "
        f"restart_s max={max(restart_s):.2f} median={sorted(restart_s)[10]:.2f}"
    )
    assert len(pids) == 21
    assert report.failures == []
    assert 20 <= report.closed_by_server <= 20 * 4  # at most one Connection: close per connection and restart
    assert len(report.servers) >= 15  # and the reconnected pool went on with the later instances


def test_stop_empties_the_store_and_closes_every_connection(deployed: Any) -> None:
    d = deployed()
    started(d)
    pool = EditorPool("127.0.0.1", d.port, connections=4, interval=0.05).start()
    time.sleep(0.5)
    report = pool.stop()
    assert report.failures == [] and len(established(d)) == 4
    d.box.systemctl("stop", UNIT)  # the socket unit stays: a stop, not a restart
    stopped = d.journal(MESSAGE_ID=MESSAGE_IDS["stopped"])
    # A stop (no restart job queued): systemd 252 would close stored connections under the editor, so
    # none is handed over; each is closed by the daemon itself (answered, or idle after the grace).
    assert stopped and int(stopped[-1]["HANDED_OVER"]) == 0 and int(stopped[-1]["CLOSED_CONNECTIONS"]) == 4, stopped[-1]
    stopping = d.journal(MESSAGE_ID=MESSAGE_IDS["stopping"])
    assert stopping and stopping[-1].get("NEXT_JOB") == "stop", stopping[-1]
    assert d.show("ActiveState")["ActiveState"] == "inactive"
    assert n_stored(d) == 0
    socks = [conn.sock for conn in pool.conns]
    assert all(s is not None and peer_closed(s, 5) for s in socks)
    assert wait_for(lambda: not established(d), 5), established(d)
    pool.close()


def test_handed_over_connection_never_used_again_is_closed_by_idle_timeout(deployed: Any) -> None:
    keepalive = 3.0
    d = deployed(env={"FLIPEDIT_PREVIEWD_KEEPALIVE_TIMEOUT": str(keepalive)})
    started(d)
    sock = socket.create_connection(("127.0.0.1", d.port))
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % d.port)
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    d.box.systemctl("restart", UNIT)
    restarted = time.monotonic()
    ready = d.journal(MESSAGE_ID=MESSAGE_IDS["ready"])
    assert int(ready[-1]["RESUMED_CONNECTIONS"]) == 1  # the idle connection went to the next instance
    assert n_stored(d) == 0
    assert not peer_closed(sock, keepalive - 1)  # still open after the restart...
    assert peer_closed(sock, 5)  # ...until the next instance's idle timeout closes it
    closed_after = time.monotonic() - restarted
    print(
        f"\n[fdstore] handed-over idle connection closed {closed_after:.2f} s after the restart (keepalive_timeout "
        f"{keepalive} s)"
    )
    assert closed_after >= keepalive - 0.5
    assert wait_for(lambda: not established(d), 5)
    sock.close()


@pytest.mark.parametrize("fdstore", ["false", "true"])
def test_sigterm_under_load_new_connections_no_retry(deployed: Any, fdstore: str) -> None:
    """Issue 12's drain: nothing refused, nothing reset; the next instance serves what arrived meanwhile."""
    d = deployed(env={"FLIPEDIT_PREVIEWD_FDSTORE": fdstore, **failpoint("sleep:0.2")})
    started(d)
    http = urllib3.PoolManager(retries=False, maxsize=1)
    results: list[tuple[float, int, str]] = []  # (sent at, status, daemon pid)
    failures: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client(seed: int) -> None:
        n = seed * 1000
        while not stop.is_set():
            n += 1
            sent = time.time()
            try:
                r = http.request(
                    "GET", f"{d.url}/get_frame/{n % 300}?width=200", headers={"Connection": "close"}, timeout=30
                )
                with lock:
                    results.append((sent, r.status, (r.headers.get("X-Request-Id") or "?-").split("-")[0]))
            except urllib3.exceptions.HTTPError as exc:
                with lock:
                    failures.append(repr(exc))
            time.sleep(0.02)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    first = d.main_pid()
    for _ in range(3):
        d.box.systemctl("restart", UNIT)
        time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    # A drain's window: from its "stopping" entry (listeners already closed) to its "stopped" entry, same PID.
    stopping = {e["_PID"]: int(e["__REALTIME_TIMESTAMP"]) / 1e6 for e in d.journal(MESSAGE_ID=MESSAGE_IDS["stopping"])}
    stopped = {e["_PID"]: int(e["__REALTIME_TIMESTAMP"]) / 1e6 for e in d.journal(MESSAGE_ID=MESSAGE_IDS["stopped"])}
    statuses = sorted({s for _, s, _ in results})
    during = [
        (pid, served) for sent, _, served in results for pid in stopping if stopping[pid] <= sent <= stopped.get(pid, 0)
    ]
    by_draining = [1 for pid, served in during if served == pid]
    print(
        f"\n[drain] fdstore={fdstore}, 3 restarts, 8 clients, new connection per request, no retry: {len(results)} "
        f"answers {statuses}, "
        f"{len(failures)} failures, {len(during)} sent during a drain, {len(by_draining)} of them served by the "
        f"draining "
        f"instance, drains_s={[round(stopped[p] - stopping[p], 2) for p in stopping if p in stopped]}"
    )
    assert failures == []
    assert statuses == [200]
    assert len(stopping) == 3 and str(first) in stopping
    assert during and not by_draining  # what arrived during a drain waited in systemd's socket for the next instance


def test_kill9_hands_nothing_over_and_costs_each_pooled_connection_one_failure(deployed: Any) -> None:
    """What the editor sees after a crash: documented in the README, bounded here."""
    d = deployed()
    started(d)
    before = int(d.show("NRestarts")["NRestarts"])
    pool = EditorPool("127.0.0.1", d.port, connections=4, interval=0.05).start()
    time.sleep(0.5)
    pid = d.main_pid()
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: int(d.show("NRestarts")["NRestarts"]) > before, 15, 0.05)
    wait_active(d)
    answered_before = pool.report.answers
    time.sleep(1.0)
    report = pool.stop()
    kinds = sorted({f.split(":")[0] for f in report.failures})
    print(f"\n[fdstore] kill -9 with 4 pooled connections, no retry: {report.summary()}, failure kinds {kinds}")
    assert 1 <= len(report.failures) <= 4  # at most one per pooled connection: the one that found it closed
    assert report.reconnects == len(report.failures)
    assert report.answers > answered_before  # the reconnected ones waited in systemd's socket for the new instance
    assert n_stored(d) == 0
    pool.close()


def test_unit_without_a_store_falls_back_to_closing(deployed: Any) -> None:
    """FileDescriptorStoreMax=0 (an old unit): the start-up probe notices, and restarts close instead of losing fds."""
    d = deployed()
    dropin = f"{USER_UNIT_DIR}/{UNIT}.d/60-nostore.conf"
    d.box.write_file(dropin, "[Service]\nFileDescriptorStoreMax=0\n")
    d.box.systemctl("daemon-reload")
    try:
        store_refused(d)
    finally:  # the sandbox (and its unit directory) serves the module's later tests
        d.box.systemctl("stop", UNIT, check=False)
        d.box.run("rm", "-f", dropin)
        d.box.systemctl("daemon-reload")


def store_refused(d: Deployed) -> None:
    started(d)
    warned = d.journal(MESSAGE_ID=MESSAGE_IDS["fdstore_unavailable"])
    assert warned and "refused" in warned[-1]["FDSTORE"]
    sock = socket.create_connection(("127.0.0.1", d.port))
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % d.port)
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    d.box.systemctl("restart", UNIT)
    stopped = d.journal(MESSAGE_ID=MESSAGE_IDS["stopped"])
    assert int(stopped[-1]["HANDED_OVER"]) == 0 and int(stopped[-1]["CLOSED_CONNECTIONS"]) == 1
    assert peer_closed(sock, 5)
    sock.close()


def test_a_request_that_never_completes_does_not_hold_a_restart(deployed: Any) -> None:
    """Bytes already read cannot be handed over: a partial request gets DRAIN_GRACE, then 503, not request_timeout."""
    d = deployed()
    started(d)
    slow = socket.create_connection(("127.0.0.1", d.port))
    slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # the head never ends
    time.sleep(0.3)
    t0 = time.monotonic()
    d.box.systemctl("restart", UNIT)
    took = time.monotonic() - t0
    slow.settimeout(5)
    answer = slow.recv(65536)
    status_line = answer.split(b"\r\n")[0]
    print(f"\n[fdstore] restart with a never-ending request open: {took:.2f} s; it got {status_line!r}")
    assert answer.startswith(b"HTTP/1.1 503") and b"stopping" in answer and b"Connection: close" in answer
    assert took < 8  # request_timeout (10 s) did not hold the restart
    slow.close()


def read_responses(sock: socket.socket, count: int, timeout: float = 30) -> list[tuple[int, dict[str, str]]]:
    """``count`` complete responses from a raw socket: (status, lower-cased headers)."""
    sock.settimeout(timeout)
    buf = b""
    out: list[tuple[int, dict[str, str]]] = []
    while len(out) < count:
        head, sep, rest = buf.partition(b"\r\n\r\n")
        if sep:
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            length = int(headers.get("content-length", "0"))
            if len(rest) >= length:
                out.append((int(lines[0].split()[1]), headers))
                buf = rest[length:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"closed after {out}; unparsed {buf[:400]!r}"
        buf += chunk
    return out


def test_pipelined_request_read_before_sigterm_is_answered_then_the_connection_handed_over(deployed: Any) -> None:
    d = deployed(env=failpoint("sleep:0.5"))
    started(d)
    old = str(d.main_pid())
    sock = socket.create_connection(("127.0.0.1", d.port))
    # Two requests in one segment: the second is read into the daemon's buffer while the first renders.
    sock.sendall(
        b"GET /get_frame/1?width=161 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\nGET /get_frame/2?width=162 "
        b"HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (d.port, d.port)
    )
    time.sleep(0.2)
    d.box.systemctl("restart", UNIT)
    first, second = read_responses(sock, 2)
    sock.sendall(b"GET /get_frame/3?width=163 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % d.port)
    (third,) = read_responses(sock, 1)
    served_by = [r[1]["x-request-id"].split("-")[0] for r in (first, second, third)]
    print(
        f"\n[fdstore] pipelined pair across a restart: statuses {[first[0], second[0], third[0]]}, served by "
        f"{served_by} (old {old})"
    )
    assert [first[0], second[0], third[0]] == [200, 200, 200]
    assert served_by[0] == served_by[1] == old != served_by[2]  # bytes read are answered by who read them
    assert "close" not in first[1].get("connection", "") + second[1].get("connection", "")
    sock.close()
