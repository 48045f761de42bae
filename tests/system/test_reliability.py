"""The reliability suite: the daemon's promises under load, faults and restarts, in the real-systemd sandbox.

Each test prints its figures (pytest -s shows them; the README's reliability table quotes them).
Loopback only, bounded in count and time.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from flipedit_previewd.client.api import PreviewClient, make_retry
from flipedit_previewd.common.journal import MESSAGE_IDS
from flipedit_previewd.common.percentiles import percentile
from flipedit_previewd.demo.project import ensure_demo_project
from tests.support.editor_client import EditorPool, local_port
from tests.support.helpers import ROOT, report, wait_for
from tests.system.deploy import UNIT, Deployed, wait_active

WATCHDOG_SEC, RESTART_SEC = 5, 1


def demo_deploy(deployed: Any, tmp_path: Path, **kwargs: Any) -> Deployed:
    """The built-in demo project (an H.264 clip and a still): renders that cost real work."""
    db = Path(ensure_demo_project(tmp_path / "demo"))
    (tmp_path / "project.sqlite").symlink_to(db)
    d: Deployed = deployed(**kwargs)
    requests.get(d.url + "/health", timeout=30)
    wait_active(d)
    return d


@pytest.mark.solo
def test_overload_400_connections_20s(deployed: Any, tmp_path: Path) -> None:
    # Render-ahead off: the capacity probe walks consecutive frames, which render-ahead would turn into
    # cache hits and so inflate the capacity the overload is compared with (under the overload itself
    # render-ahead does nothing: tests/integration/test_render_ahead.py).
    d = demo_deploy(deployed, tmp_path, args="--render-ahead false")
    # Load and capacity probe from a fresh interpreter: measured from inside this long-lived pytest
    # process (hundreds of tests' objects on its heap) the client itself was the bottleneck in CI
    # runs (capacity 175/s, goodput 0.78) while the same test alone gave 1.04-1.07.
    probe = subprocess.run(
        [sys.executable, "-m", "tests.system.overload_probe", d.url, "400", "20"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=ROOT,
    )
    measured = json.loads(probe.stdout)
    capacity, stats = measured["capacity"], measured["overload"]
    goodput = stats["goodput_per_s"]
    report(
        "reliability",
        "overload 400x20s",
        capacity_per_s=round(capacity, 1),
        goodput_per_s=goodput,
        goodput_ratio=round(goodput / capacity, 2),
        statuses=stats["statuses"],
        connection_errors=stats["connection_errors"],
        health_p99_s=stats["health_p99_s"],
        health_max_s=stats["health_max_s"],
    )
    assert stats["connection_errors"] == 0
    assert set(stats["statuses"]) <= {"200", "503"} and stats["503_without_retry_after"] == 0
    assert stats["health_p99_s"] < 1.0
    # 0.8, not 0.9, since 2026-12-06: frames kept for a scrub turning back are now scaled only when asked for, which
    # made the capacity probe (4 clients on consecutive frames, served out of order by 2 workers) ~40% faster
    # (167 -> 235 frames/s here) and the overload's sparse frames ~20% faster (165 -> 200): the ratio fell from
    # ~1.0 to 0.85-0.90 while both figures rose. Below 0.8 is still a collapse worth failing for.
    assert goodput >= 0.8 * capacity


def test_kill9_every_5s_while_20_clients_fetch(deployed: Any, tmp_path: Path) -> None:
    d = demo_deploy(deployed, tmp_path)
    failures: list[str] = []
    ok = [0]
    stop = threading.Event()

    def client_loop(seed: int) -> None:
        rng = random.Random(seed)
        client = PreviewClient(d.url, timeout=15, retry=make_retry(attempts=6, backoff=0.2))
        while not stop.is_set():
            try:
                client.frame(rng.randrange(0, 150), width=320)
                ok[0] += 1
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                failures.append(repr(exc))
        client.close()

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    kills = 0
    pids = set()
    end = time.monotonic() + 30
    while time.monotonic() < end:
        time.sleep(5)
        pid = d.main_pid()
        if pid:
            pids.add(pid)
            os.kill(pid, signal.SIGKILL)
            kills += 1
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join()
    report(
        "reliability",
        "kill -9 every 5 s for 30 s, 20 clients",
        kills=kills,
        fetches_ok=ok[0],
        failures=len(failures),
        restarts=d.show("NRestarts")["NRestarts"],
    )
    assert kills >= 5 and len(pids) >= 5
    assert not failures, failures[:3]


def test_hangs_are_restarted_every_time(deployed: Any, tmp_path: Path) -> None:
    """A true hang (SIGSTOP) is restarted by the watchdog every time. A render stuck on every worker is
    not a hang of the daemon: it is cancelled at the render budget (test_loop_system.py)."""
    stop_times = []
    d = demo_deploy(deployed, tmp_path)
    for _ in range(5):
        before, pid = int(d.show("NRestarts")["NRestarts"]), d.main_pid()
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        assert wait_for(lambda b=before: int(d.show("NRestarts")["NRestarts"]) > b, 20, 0.05)
        stop_times.append(time.monotonic() - t0)
        requests.get(d.url + "/health", timeout=30)
        wait_active(d)
    report(
        "reliability",
        "hang",
        sigstop_restart_s=[round(t, 2) for t in stop_times],
        bound_s=WATCHDOG_SEC + RESTART_SEC + 2,
    )
    assert max(stop_times) <= WATCHDOG_SEC + RESTART_SEC + 2


def test_keepalive_200_reuses_after_idle_0_to_20s(deployed: Any, tmp_path: Path) -> None:
    """200 editor-like connections (no retry), each used once and then idle 0-19.5 s before it asks for a frame:
    every one of those 200 reuses answered on its first connection. All idle at once, so the test takes the
    longest idle (about 20 s), not the sum of several."""
    d = demo_deploy(deployed, tmp_path)
    failures: list[str] = []
    reused = [0]
    idles: list[float] = []

    def run(seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
        try:
            conn.request("GET", "/health")  # the first use: the connection is now a pooled keep-alive one
            first = conn.getresponse()
            first.read()
            port = local_port(conn)
            idle = rng.uniform(0, 19.5)  # the daemon keeps an idle connection 20 s (its timer starts first)
            idles.append(idle)
            time.sleep(idle)
            conn.request("GET", f"/get_frame/{rng.randrange(0, 150)}?width=320")
            response = conn.getresponse()
            body = response.read()
            again = local_port(conn)
        except (OSError, http.client.HTTPException) as exc:
            failures.append(f"connection {seed}: {exc!r}")
            return
        finally:
            conn.close()
        if (
            first.status != 200
            or response.status != 200
            or body[:2] != b"\xff\xd8"
            or first.will_close
            or response.will_close
        ):
            failures.append(f"connection {seed}: status {first.status}, then {response.status}")
        elif not port or again != port:  # http.client reconnects silently: the local port tells
            failures.append(f"connection {seed} after {idle:.1f} s idle went out on a new connection")
        else:
            reused[0] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report(
        "reliability",
        "keep-alive reuse",
        reuses=reused[0],
        failures=len(failures),
        idle_min_s=round(min(idles), 2),
        idle_max_s=round(max(idles), 2),
    )
    assert not failures, failures[:3]
    assert reused[0] == 200


@pytest.mark.solo
def test_slowloris_does_not_delay_normal_clients(deployed: Any, tmp_path: Path) -> None:
    d = demo_deploy(deployed, tmp_path)

    def p95(width: int, samples: int = 100) -> float:
        """Each pass at its own width: every request is a real render, never a cache hit of an earlier pass."""
        times = []
        with requests.Session() as session:
            for i in range(samples):
                t0 = time.perf_counter()
                # frames 11 apart: not a playback, so render-ahead leaves them to be real renders
                response = session.get(f"{d.url}/get_frame/{(i * 11) % 150}?width={width}", timeout=10)
                assert response.status_code == 200 and response.headers["X-Cache"] == "miss"
                times.append(time.perf_counter() - t0)
        return percentile(times, 95) or 0.0

    p95(318, 30)  # warm decoders
    unloaded = p95(320)
    drips = [socket.create_connection(("127.0.0.1", d.port)) for _ in range(100)]
    stop = threading.Event()

    def drip() -> None:
        payload = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 100
        i = 0
        while not stop.is_set() and i < len(payload):
            for sock in drips:
                try:
                    sock.send(payload[i : i + 1])
                except OSError:
                    pass
            i += 1
            stop.wait(1.0)

    dripper = threading.Thread(target=drip)
    dripper.start()
    time.sleep(1.5)
    loaded = p95(322)
    stop.set()
    dripper.join()
    for sock in drips:
        sock.close()
    report(
        "reliability",
        "slowloris 100 drips",
        unloaded_p95_ms=round(unloaded * 1000, 2),
        loaded_p95_ms=round(loaded * 1000, 2),
        ratio=round(loaded / unloaded, 2),
    )
    assert loaded <= 2 * unloaded + 0.005  # 5 ms of slack for a shared, noisy 2-core machine


def editor_pool(d: Deployed) -> EditorPool:
    """10 editor-like keep-alive connections, no retry, each asking every 50 ms (renders that cost real work)."""
    return EditorPool(
        "127.0.0.1",
        d.port,
        connections=10,
        interval=0.05,
        timeout=30,
        path=lambda n: f"/get_frame/{n % 150}?width={(320, 480, 640)[n % 3]}",
    )


def test_graceful_stop_and_reload_under_load(deployed: Any, tmp_path: Path) -> None:
    """The reload half: 10 editor-like connections (no retry) through a reload: no failed request, every
    connection kept, and the reload took effect (a changed setting, the journal's reload entry)."""
    conf = tmp_path / "flipedit-preview" / "previewd.toml"
    conf.parent.mkdir()
    conf.write_text("queue_size = 20\n")
    d = demo_deploy(deployed, tmp_path)
    assert requests.get(d.url + "/health", timeout=10).json()["queue_capacity"] == 20
    pid = d.main_pid()
    pool = editor_pool(d).start()
    try:
        time.sleep(2)
        before = pool.progress()
        conf.write_text("queue_size = 17\n")
        d.box.systemctl("reload", UNIT)  # returns once the daemon said READY=1 after RELOADING=1
        assert wait_for(lambda: requests.get(d.url + "/health", timeout=10).json()["queue_capacity"] == 17, 10)
        time.sleep(2)
    finally:
        result = pool.stop()
        pool.close()
    reloads = d.journal(MESSAGE_ID=MESSAGE_IDS["reload"])
    report(
        "reliability",
        "reload under load",
        fetches_ok=result.answers,
        answers_before_reload=before[0],
        failures=len(result.failures),
        reconnects=result.reconnects,
        closed_by_server=result.closed_by_server,
        reloads=len(reloads),
    )
    assert not result.failures, result.failures[:3]
    assert before[0] > 0 and result.answers > before[0]
    assert (
        result.reconnects == 0 and result.closed_by_server == 0 and result.final_ports == result.initial_ports
    )  # every connection kept
    assert len(reloads) == 1 and "kept old configuration" not in str(reloads[0].get("MESSAGE"))
    assert d.main_pid() == pid and result.servers == {str(pid)}  # reloaded in place, not restarted


def test_graceful_stop_under_load_fails_no_request(deployed: Any, tmp_path: Path) -> None:
    """The stop half: 10 editor-like connections (no retry) through `systemctl stop` (the socket stays): no failed
    request; the next requests start the service again."""
    d = demo_deploy(deployed, tmp_path)
    first_pid = d.main_pid()
    pool = editor_pool(d).start()
    try:
        time.sleep(2)
        d.box.systemctl("stop", UNIT)  # the socket stays: the next request starts the service again
        time.sleep(4)
    finally:
        result = pool.stop()
        pool.close()
    report(
        "reliability",
        "stop under load",
        fetches_ok=result.answers,
        failures=len(result.failures),
        reconnects=result.reconnects,
        closed_by_server=result.closed_by_server,
        daemon_pids=len(result.servers),
        restarted=d.main_pid() not in (0, first_pid),
        first_failures=result.failures[:2],
    )
    assert d.show("ActiveState")["ActiveState"] == "active" and d.main_pid() != first_pid
    assert len(result.servers) == 2  # answered by the next instance too
    assert not result.failures, result.failures[:3]
