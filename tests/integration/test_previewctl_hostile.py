"""previewctl as the victim: a fake server on a test port says whatever an attacker likes.

Every subcommand must end within its deadline, create no file, print no raw control
character, and exit with a documented code (0-3), whatever the server answers.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flipedit_previewd.ctl import main
from flipedit_previewd.ctl.context import Env
from tests.support.helpers import ROOT, FakeHandler

RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
EVIL = "\x1b[2J\x1b]8;;http://evil.example/\x07click\x1b]8;;\x07\r\nFAKE LINE \u202e [/bold] [link=file:///etc/passwd]x[/link]"


PEAK_KIB: list[int] = []


def run_measured(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    """subprocess.run, plus this one child's own peak RSS (VmHWM), kept in PEAK_KIB."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: dict[str, bytes] = {}
    readers = [
        threading.Thread(target=lambda n=n, f=f: out.__setitem__(n, f.read()))
        for n, f in (("o", proc.stdout), ("e", proc.stderr))
    ]
    for reader in readers:
        reader.start()
    end = time.monotonic() + timeout
    peak = 0
    while True:
        # VmHWM: the high-water RSS since exec. (wait4's ru_maxrss starts from this test process's own
        # RSS at fork, which is large late in a full run.) Sampled until the child is reaped.
        try:
            with open(f"/proc/{proc.pid}/status") as status_file:
                for line in status_file:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > end:
            proc.kill()
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    PEAK_KIB.append(peak)
    return subprocess.CompletedProcess(argv, proc.returncode, out.get("o", b""), out.get("e", b""))


def crafted_health(tmp: Path) -> dict[str, Any]:
    return {
        "status": "ok [/bold]" + EVIL,
        "queue_size": "lots",
        "queue_capacity": float("nan"),
        "in_flight": EVIL,
        "capacity": None,
        "rejected_last_minute": "1e999",
        "keepalive_timeout_s": "inf",
        "latency_ms": {"p50": EVIL, "p95": "nan", "p99": [1]},
        "counters": {EVIL: EVIL},
        "workers": [{"index": EVIL}, "junk", {"pid": 1, "state": EVIL, "frame": 1, "since_s": "x", "completed": None}],
        "project": {"path": str(tmp / "victim.db?mode=rwc&x="), "state": EVIL, "error": EVIL},
        "media_roots": [EVIL],
        "media_roots_skipped": [EVIL],
        "pid": EVIL,
        "version": EVIL,
        "uptime_s": EVIL,
    }


class Fake(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    mode = "crafted"
    tmp = Path("/tmp")


class Handler(FakeHandler):
    def answer(self, sock: socket.socket, head: bytes, mode: str) -> None:
        path = head.split(b" ")[1].decode("latin-1")
        tmp = self.server.tmp  # type: ignore[attr-defined]
        if mode == "crafted":
            if path.startswith("/health"):
                body = json.dumps(crafted_health(tmp)).encode()
            elif path.startswith("/debug/timeline"):
                body = json.dumps(
                    {"clips": [{"source_path": "/nonexistent/" + EVIL}, {"source_path": 5}, "x"]}
                ).encode()
            else:
                body = EVIL.encode()
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nX-Cache: "
                + EVIL.encode("latin-1", "replace")[:20].replace(b"\r\n", b"")
                + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                + body
            )
        elif mode.startswith("decoy:"):  # names another process as the daemon
            body = json.dumps({"status": "ok", "pid": int(mode[6:]), "workers": []}).encode()
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        elif mode == "fifo":
            body = json.dumps({"status": "ok", "project": {"path": str(tmp / "fifo.db"), "state": "ok"}}).encode()
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        elif mode == "drip":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n{")
            for _ in range(600):
                sock.sendall(b" ")
                time.sleep(0.1)
        elif mode == "drip-head":
            for byte in b"HTTP/1.1 200 OK\r\nX-" + b"a" * 1000:
                sock.sendall(bytes([byte]))
                time.sleep(0.1)
        elif mode in ("huge", "huge-unsized"):
            size = 300 * 1024 * 1024
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + (b"Content-Length: %d\r\n" % size if mode == "huge" else b"Connection: close\r\n")
                + b"\r\n["
            )
            block = b"1," * 32768
            for _ in range(size // len(block)):
                sock.sendall(block)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Fake]:
    server = Fake(("127.0.0.1", 0), Handler)
    server.tmp = tmp_path
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


SUBCOMMANDS = [
    (["health"], 8),
    (["health", "--json"], 8),
    (["monitor", "--count", "2", "--interval", "0.1"], 12),
    (["render", "1", "-o", "out.jpg"], 8),
    (["doctor"], 30),
    (["status"], 30),
    (["logs", "-n", "5"], 15),
    (["stats"], 15),
]


@pytest.mark.parametrize("mode", ["crafted", "fifo", "drip", "drip-head", "huge", "huge-unsized"])
def test_every_subcommand_survives_a_hostile_server(fake: Fake, tmp_path: Path, mode: str) -> None:
    fake.mode = mode
    os.mkfifo(tmp_path / "fifo.db")
    work = tmp_path / "cwd"
    work.mkdir()
    before = set(tmp_path.rglob("*"))
    url = f"http://127.0.0.1:{fake.server_address[1]}"
    for argv, deadline in SUBCOMMANDS:
        started = time.monotonic()
        proc = run_measured(
            [str(ROOT / ".venv/bin/previewctl"), "--url", url, "--timeout", "2", *argv],
            work,
            {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)},
            deadline + 30,
        )
        elapsed = time.monotonic() - started
        out = proc.stdout.decode("utf-8", "replace") + proc.stderr.decode("utf-8", "replace")
        assert elapsed < deadline, (mode, argv, elapsed, out[-500:])
        assert proc.returncode in (0, 1, 2, 3), (mode, argv, proc.returncode, out[-500:])
        assert not RAW_CONTROL.search(out.replace("\n", "")), (mode, argv, out[-800:])
        assert "unexpected error" not in out and "Traceback" not in out, (mode, argv, out[-800:])
        assert set(tmp_path.rglob("*")) == before, (mode, argv, set(tmp_path.rglob("*")) - before)
    # 300 MB answers are refused at the cap: previewctl never held more than a fraction of one.
    # (ru_maxrss of the children reaped by this process: daemons of earlier tests count too, so the
    # figure is taken from previewctl's own runs, see run(): peak_kib)
    assert max(PEAK_KIB) < 250 * 1024, max(PEAK_KIB)


def test_monitor_on_a_terminal_shows_markup_as_text(fake: Fake, tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main(
        [
            "--url",
            f"http://127.0.0.1:{fake.server_address[1]}",
            "--timeout",
            "2",
            "monitor",
            "--count",
            "1",
            "--interval",
            "0.1",
        ],
        Env(out, err, {}, True, False, 120, sleep=lambda s: None),
    )
    text = out.getvalue() + err.getvalue()
    assert code == 0, text
    assert "[/bold]" in text and "\\x1b[2J" in text
    assert "\x1b]8" not in text and "\x1b[2J" not in text


def test_profile_refuses_a_pid_that_does_not_hold_the_socket(fake: Fake, tmp_path: Path) -> None:
    """The server at the address names a decoy (a Python process of ours, which py-spy --idle would record):
    profile refuses, says why, and records nothing; the server's own PID (this test process holds its
    listening socket) would pass the check."""
    decoy = subprocess.Popen([str(ROOT / ".venv/bin/python"), "-c", "import time; time.sleep(60)"])
    try:
        fake.mode = f"decoy:{decoy.pid}"
        out = tmp_path / "p.svg"
        done = subprocess.run(
            [
                str(ROOT / ".venv/bin/previewctl"),
                "--url",
                f"http://127.0.0.1:{fake.server_address[1]}",
                "profile",
                "--seconds",
                "1",
                "--idle",
                "-O",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
        assert f"refusing to profile pid {decoy.pid}" in done.stderr and "does not hold the socket" in done.stderr, (
            done.stderr
        )
        assert not out.exists()
    finally:
        decoy.kill()
        decoy.wait()
    from flipedit_previewd.ctl.verify import daemon_problem

    url = f"http://127.0.0.1:{fake.server_address[1]}"
    assert daemon_problem(os.getpid(), url) == ""
    assert "does not hold" in daemon_problem(os.getppid(), url) or "uid" in daemon_problem(os.getppid(), url)
    assert "belongs to uid 0" in daemon_problem(1, url, euid=12345)
