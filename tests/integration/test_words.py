"""What a person sees: the daemon's HTTP conventions and words, previewctl run as a subprocess.

A real daemon on a real socket, started by hand (no systemd manager, no journal here): the
situation of the README's demo. The journal side is in tests/system/test_previewctl_system.py.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from tests.support.helpers import ROOT, build_project, ctl, decode, still_project

PREVIEWCTL = str(ROOT / ".venv/bin/previewctl")
DAEMON = str(ROOT / ".venv/bin/flipedit-previewd")
SNAPSHOTS = Path(__file__).with_name("snapshots")
REPRS = re.compile(
    r"\bNone\b|\bTrue\b|\bFalse\b|datetime\.|timedelta|Monotonic\(|UUID\(|Error\b(?!s)|\(\)|\{\}|\[\]|Traceback"
)


def project(tmp_path: Path, size: tuple[int, int] = (64, 64)) -> Path:
    return still_project(tmp_path, rect=(0, 0, 1280, 720), size=size, db="p.sqlite")


def systemd_manager_here() -> bool:
    return (
        subprocess.run(["systemctl", "--user", "show", "-p", "Version"], capture_output=True).returncode == 0
        or subprocess.run(["systemctl", "show", "-p", "Version"], capture_output=True).returncode == 0
    )


def raw_exchange(sock: socket.socket, request: bytes) -> bytes:
    sock.sendall(request.replace(b"\r\nHost: x\r\n", b"\r\nHost: 127.0.0.1:%d\r\n" % sock.getpeername()[1]))
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {buf[:200]!r}"
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


# --- HTTP ---------------------------------------------------------------------------------------


def test_http_allow_date_304_and_query_400_keeps_the_connection(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon("--project", str(project(tmp_path)))
    r = requests.post(daemon.url + "/health", timeout=10)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
    r = requests.post(
        daemon.url + "/timeline", headers=daemon.auth, timeout=10
    )  # the owner, or the guard answers 401 first
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD, PUT, DELETE"
    first = requests.get(daemon.url + "/get_frame/1", timeout=10)
    not_modified = requests.get(
        daemon.url + "/get_frame/1", headers={"If-None-Match": first.headers["ETag"]}, timeout=10
    )
    assert not_modified.status_code == 304
    assert "Content-Length" not in not_modified.headers and "Content-Type" not in not_modified.headers
    for response in (
        first,
        not_modified,
        requests.get(daemon.url + "/nope", timeout=10),
        requests.get(daemon.url + "/health", timeout=10),
    ):
        assert re.fullmatch(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT", response.headers["Date"]), (
            response.headers
        )
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        for bad in (b"/get_frame/1?quality=500", b"/get_frame/1?width=abc", b"/get_frame/-1"):
            head = raw_exchange(sock, b"GET " + bad + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400 ") and b"Connection: close" not in head, head
        head = raw_exchange(sock, b"GET /get_frame/1 HTTP/1.1\r\nHost: x\r\n\r\n")  # the same connection still serves
        assert head.startswith(b"HTTP/1.1 200 "), head


def test_other_aspect_output_is_letterboxed_centred(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon("--project", str(project(tmp_path)))
    square = decode(daemon.get("/get_frame/1?width=400&height=400&format=png").content)
    assert square.size == (400, 400)
    # 16:9 in a square: 400x225 picture, (400-225)/2 = 87 rows of black above and 88 below
    assert square.getpixel((200, 200)) == (255, 0, 0)
    assert square.getpixel((200, 80)) == (0, 0, 0) and square.getpixel((200, 320)) == (0, 0, 0)
    assert square.getpixel((200, 90)) == (255, 0, 0) and square.getpixel((200, 310)) == (255, 0, 0)
    tall = decode(
        daemon.get("/get_frame/1?width=1280&height=360&format=png").content
    )  # wider than 16:9: bars left and right
    assert (
        tall.getpixel((640, 180)) == (255, 0, 0)
        and tall.getpixel((10, 180)) == (0, 0, 0)
        and tall.getpixel((1270, 180)) == (0, 0, 0)
    )


def test_4xx_answers_are_summarised_with_their_reason(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon("--project", str(project(tmp_path)))
    for path in ("/get_frame/1?quality=200", "/get_frame/1?quality=200", "/nope"):
        assert daemon.get(path).status_code in (400, 404)
    daemon.stop()  # the per-minute summary is also written at stop
    summary = [line for line in daemon.log().splitlines() if "summary:" in line]
    assert summary, daemon.log()
    assert "http_400=2" in summary[-1] and "http_404=1" in summary[-1], summary
    assert "quality must be between 1 and 95" in summary[-1] and "COUNT_HTTP_400=2" in summary[-1]


# --- the daemon's own words -----------------------------------------------------------------------


def test_bare_start_says_why_it_listens_there_and_serves_no_project(tmp_path: Path) -> None:
    """Run bare (no --listen, no systemd socket) in a private network namespace, so 8081 is ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "NOTIFY_", "FLIPEDIT_PREVIEWD_"))}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", f"ip link set lo up && exec {DAEMON}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if " ready: " in line:
                break
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    text = "".join(lines)
    assert "127.0.0.1:8081" in text and "no socket from systemd and no --listen" in text, text
    assert f"{tmp_path}/Documents/flipedit_projects_metadata.sqlite does not exist" in text, text
    assert "ready: ready" not in text and "serving no project" in text


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["--listen", "nonsense"], {}, "is not HOST:PORT"),
        ([], {"FLIPEDIT_PREVIEWD_WROKERS": "3"}, "unknown variable FLIPEDIT_PREVIEWD_WROKERS"),
        (["--workers", "0"], {}, "workers"),
    ],
)
def test_configuration_mistakes_exit_2_with_one_line_that_does_not_repeat_itself(
    tmp_path: Path, args: list[str], env: dict[str, str], words: str
) -> None:
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLIPEDIT_PREVIEWD_")},
        "XDG_CONFIG_HOME": str(tmp_path),
        **env,
    }
    done = subprocess.run([DAEMON, *args], capture_output=True, text=True, timeout=60, env=environ)
    assert done.returncode == 2 and words in done.stderr, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.count(words) == 1 and "[ERROR=" not in done.stderr, done.stderr


def test_print_config_round_trips_through_the_daemon(tmp_path: Path) -> None:
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLIPEDIT_PREVIEWD_")},
        "XDG_CONFIG_HOME": str(tmp_path),
    }
    first = subprocess.run(
        [DAEMON, "--print-config", "--demo", "--listen", "unix:/tmp/a b.sock", "--queue-timeout", "1.5"],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=True,
    ).stdout
    (tmp_path / "flipedit-preview").mkdir()
    (tmp_path / "flipedit-preview" / "previewd.toml").write_text(first)
    second = subprocess.run(
        [DAEMON, "--print-config"], capture_output=True, text=True, timeout=60, env=environ, check=True
    ).stdout
    values = [line.split("#")[0].strip() for line in first.splitlines() if not line.startswith("#")]
    assert values == [line.split("#")[0].strip() for line in second.splitlines() if not line.startswith("#")]
    assert re.search(r"^demo +? = true +# user file", second, re.M), second


# --- previewctl conventions -----------------------------------------------------------------------


def test_global_flags_after_the_subcommand_and_url_without_scheme(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon("--project", str(project(tmp_path)))
    bare = f"127.0.0.1:{daemon.port}"
    for args in (
        ["--url", bare, "health"],
        ["health", "--url", bare],
        ["health", "--url", bare, "--timeout", "5", "--no-pager"],
    ):
        done = ctl(*args)
        assert done.returncode == 0 and "status      ok" in done.stdout, (args, done.stderr)
    assert ctl("health", "--json", "--url", bare).stdout.startswith("{")


@pytest.mark.parametrize(
    "args",
    [
        ["--timeout", "0", "health"],
        ["monitor", "--interval", "-1"],
        ["monitor", "--interval", "0"],
        ["render", "3", "--width", "0"],
        ["render", "3", "--quality", "0"],
        ["render", "3", "--quality", "200"],
        ["logs", "--outcome", "bogus"],
        ["logs", "--event", "bogus"],
        ["logs", "-n", "-5"],
        ["doctor", "--since", "banana"],
        ["logs", "--since", "1h"],
        ["render", "-1"],
        ["stats", "-o", "yaml"],
        ["profile", "--seconds", "0"],
        ["--url", "ftp://x", "health"],
    ],
)
def test_usage_mistakes_exit_3_with_one_line(args: list[str]) -> None:
    done = ctl(*args)
    assert done.returncode == 3, (args, done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1 and "unexpected error" not in done.stderr and not REPRS.search(done.stderr), (
        done.stderr
    )


def test_render_to_stdout_and_refuses_a_directory(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon("--project", str(project(tmp_path)))
    done = subprocess.run([PREVIEWCTL, "--url", daemon.url, "render", "3", "-O", "-"], capture_output=True, timeout=60)
    assert done.returncode == 0 and done.stdout[:2] == b"\xff\xd8" and b"stdout" in done.stderr
    assert not (tmp_path / "-").exists() and not Path("-").exists()
    done = ctl("--url", daemon.url, "render", "3", "-O", str(tmp_path))
    assert done.returncode == 3 and "is a directory" in done.stderr
    done = ctl("--url", daemon.url, "render", "3", "--width", "9000", "--height", "9000", "-O", str(tmp_path / "x.jpg"))
    assert done.returncode == 1 and "HTTP 400" in done.stderr and "exceeds" in done.stderr and "logs" not in done.stderr


def test_journal_commands_say_where_they_looked_when_there_is_no_journal(tmp_path: Path) -> None:
    empty = tmp_path / "journal"
    empty.mkdir()
    for args in (["logs"], ["logs", "-f"], ["stats"], ["stats", "--json"]):
        done = ctl(*args, "-D", str(empty))
        assert done.returncode == 1 and f"no journal found (looked in {empty})" in done.stderr, (args, done.stderr)
        # -o json: stdout is a JSON document even so (the error, its hint, the exit code); text: nothing on stdout
        assert json.loads(done.stdout)["exit_code"] == 1 if "--json" in args else not done.stdout, (args, done.stdout)
    done = ctl("doctor", "-D", str(empty), "--url", "http://127.0.0.1:9")
    flowing = " ".join(done.stdout.split())  # wrapped within 80 columns
    assert (
        done.returncode == 1
        and f"[FAIL] journal has the daemon's entries: no journal found (looked in {empty})" in flowing
    )
    assert "[ok  ] no watchdog" not in done.stdout


def test_status_and_doctor_without_a_systemd_manager_show_health_and_mark_systemd_checks_na(
    start_daemon: Any, tmp_path: Path
) -> None:
    if systemd_manager_here():
        pytest.skip("a systemd manager answers here; the systemd side is in tests/system")
    daemon = start_daemon("--project", str(project(tmp_path)))
    status = ctl("--url", daemon.url, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "systemd     n/a: no systemd manager answers here" in status.stdout and "health      ok via" in status.stdout
    assert "daemon-reload" not in status.stdout + status.stderr
    doctor = ctl("--url", daemon.url, "doctor", "-o", "json")
    results = {f["check"]: f["result"] for f in json.loads(doctor.stdout)["findings"]}
    assert results["socket listening"] == results["service not failed"] == results["journald rate limit off"] == "n/a"
    assert results["daemon answers /health"] == "ok" and results["project database readable and fresh"] == "ok"
    assert "units installed" not in results


def test_doctor_names_a_refused_media_format(start_daemon: Any, tmp_path: Path) -> None:
    """A TIFF (here named .png) is refused by content: the frame's placeholder, /health and doctor name it."""
    tiff = tmp_path / "scan.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tiff, "TIFF")
    db = tmp_path / "project.sqlite"
    build_project(
        db, 3, [{"name": "v", "order": 0, "clips": [{"source": tiff, "type": "image", "start": 0, "end": 1000}]}]
    )
    daemon = start_daemon("--project", str(db))
    assert daemon.get("/get_frame/1").status_code == 200
    problem = "TIFF is not an allowed still format; allowed: JPEG, PNG, WebP, BMP, GIF"
    assert daemon.health()["media_problems"][0]["problem"] == problem
    daemon.log_once(problem)
    doctor = ctl("--url", daemon.url, "doctor", "-o", "json")
    found = {f["check"]: f for f in json.loads(doctor.stdout)["findings"]}["media decodable"]
    assert found["result"] == "fail" and f"{tiff}: {problem}" in found["detail"], found
    assert doctor.returncode == 1


# --- snapshots of every subcommand ---------------------------------------------------------------


def normalise(text: str, tmp_path: Path, port: int) -> str:
    """What varies between runs (paths, port, pids, times, counts) becomes a placeholder; words and layout stay."""
    # lines wrapped within 80 columns are joined first: where they wrap depends on the path's length (checked apart)
    text = re.sub(r"\n(?: {2}| {7,})(?!fix: )(?=\S)", " ", text)
    text = text.replace(str(tmp_path), "<TMP>").replace(f"127.0.0.1:{port}", "<ADDRESS>")
    text = re.sub(r"PID 1 is \S+\)", "PID 1 is <PID1>)", text)
    # the daemon's counter names are its own (other work adds some): their form is checked, not the list
    text = re.sub(r"^counters    [a-z_]+=\d+.*(\n {12}[a-z_]+=\d+.*)*$", "counters    <NAME=N ...>", text, flags=re.M)
    text = re.sub(r"\d+(\.\d+)?(ms|s|min|h|d)\b", "<DURATION>", text)
    return re.sub(r"\d+(\.\d+)?", "N", text)


def snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("UPDATE_SNAPSHOTS"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name}: human output changed; if intended, rerun with UPDATE_SNAPSHOTS=1\n{text}"


def test_snapshot_of_each_subcommand_and_json_for_each(start_daemon: Any, tmp_path: Path) -> None:
    if systemd_manager_here():
        pytest.skip("the snapshots are of the by-hand setup")
    daemon = start_daemon("--project", str(project(tmp_path)), "--workers", "2")
    url = daemon.url
    assert daemon.get("/get_frame/5").status_code == 200  # the fixed state: one render done
    empty = tmp_path / "journal"
    empty.mkdir()
    runs = {
        "health": ["--url", url, "health"],
        "status": ["--url", url, "status"],
        "monitor": ["--url", url, "monitor", "--count", "1"],
        "logs": ["--url", url, "logs", "-D", str(empty)],
        "stats": ["--url", url, "stats", "-D", str(empty)],
        "doctor": ["--url", url, "doctor", "-D", str(empty)],
        "render": ["--url", url, "render", "5", "-O", str(tmp_path / "f.jpg")],
        "profile": ["--url", url, "profile", "--seconds", "1", "--idle", "-O", str(tmp_path / "p.svg")],
    }
    for name, args in runs.items():
        done = ctl(*args)
        text = f"exit {done.returncode}\n" + normalise(
            f"--- stdout\n{done.stdout}--- stderr\n{done.stderr}", tmp_path, daemon.port
        )
        assert not REPRS.search(done.stdout + done.stderr), (name, done.stdout, done.stderr)
        assert "\033[" not in done.stdout + done.stderr, name  # piped: no colour
        # A path is one word, never broken: a line it pushes past 80 columns depends on where the checkout lives.
        wide = [line for line in done.stdout.splitlines() if len(line) > 80 and str(tmp_path) not in line]
        assert not wide or name == "monitor", (name, wide)  # 80 columns (monitor's one line per sample is a log's)
        snapshot(name, text)
    json_runs = {
        "health": ["--url", url, "health", "-o", "json"],
        "status": ["--url", url, "status", "--json"],
        "monitor": ["--url", url, "monitor", "--count", "2", "--interval", "0.1", "-o", "json"],
        "doctor": ["--url", url, "doctor", "--json", "-D", str(empty)],
        "render": ["--url", url, "render", "5", "--json", "-O", str(tmp_path / "g.jpg")],
        "profile": ["--url", url, "profile", "--seconds", "1", "--idle", "--json", "-O", str(tmp_path / "q.svg")],
    }
    for name, args in json_runs.items():
        done = ctl(*args)
        docs = (
            [json.loads(line) for line in done.stdout.splitlines()] if name == "monitor" else [json.loads(done.stdout)]
        )
        assert docs and all(isinstance(d, dict) for d in docs), (name, done.stdout, done.stderr)
    render = json.loads(ctl(*json_runs["render"]).stdout)
    assert isinstance(render["bytes"], int) and isinstance(render["ms"], float) and render["cache"] == "hit"
    findings = json.loads(ctl(*json_runs["doctor"]).stdout)["findings"]
    assert all(f["fix"] is None for f in findings if f["result"] != "fail"), (
        findings
    )  # a fix only where something failed
    assert any(f["fix"] for f in findings if f["result"] == "fail")


def test_colour_on_a_terminal_none_with_no_color(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon("--project", str(project(tmp_path)))

    def on_pty(*args: str, **env: str) -> str:
        controller, terminal = pty.openpty()
        environ = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        proc = subprocess.Popen(
            [PREVIEWCTL, "--url", daemon.url, *args],
            stdout=terminal,
            stderr=terminal,
            stdin=subprocess.DEVNULL,
            env={**environ, "TERM": "xterm-256color", **env},
        )
        os.close(terminal)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(timeout=60)
        os.close(controller)
        return b"".join(chunks).decode(errors="replace")

    health = on_pty("health")
    assert "\033[32mok\033[0m" in health, health
    doctor = on_pty("doctor", "-D", str(tmp_path))
    assert "\033[1;31m[FAIL]\033[0m" in doctor, doctor
    for text in (on_pty("health", NO_COLOR="1"), on_pty("doctor", "-D", str(tmp_path), NO_COLOR="1")):
        assert "\033[" not in text and ("ok" in text or "FAIL" in text), text


# --- profile -------------------------------------------------------------------------------------


def test_profile_records_main_process_and_a_worker_under_load(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon("--project", str(project(tmp_path, (640, 360))))
    stop = threading.Event()

    def load() -> None:
        frame = 0
        with requests.Session() as session:
            while not stop.is_set():
                frame += 1
                session.get(f"{daemon.url}/get_frame/{frame}?width={200 + frame % 600}", timeout=30)

    loaders = [threading.Thread(target=load) for _ in range(3)]
    for t in loaders:
        t.start()
    try:
        out = tmp_path / "profile.svg"
        done = ctl("--url", daemon.url, "profile", "--seconds", "3", "-O", str(out))
    finally:
        stop.set()
        for t in loaders:
            t.join()
    assert done.returncode == 0, done.stderr
    svg = out.read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    pids = {daemon.proc.pid} | {w["pid"] for w in daemon.health()["workers"]}
    named = {int(p) for p in re.findall(r"process (\d+)", svg)}
    assert daemon.proc.pid in named and len(named & pids) >= 2, (named, pids)
    assert "ClientProtocol" in svg and "connection.py" in svg  # the main process: the event loop's request handling
    assert "compositor.py" in svg  # a worker: compositing


def test_profile_without_py_spy_says_how_to_install_it(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon("--project", str(project(tmp_path)))
    elsewhere = (
        tmp_path / "bin"
    )  # previewctl's own Python as if installed where no py-spy lies beside it, PATH without one
    elsewhere.mkdir()
    script = (
        f"import sys; sys.executable = '{elsewhere}/python3'; from flipedit_previewd.ctl import main; sys.exit(main())"
    )
    done = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-c", script, "--url", daemon.url, "profile", "--seconds", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": f"{elsewhere}:/usr/bin:/bin"},
    )
    assert done.returncode == 1 and "py-spy is not installed" in done.stderr and "pip install py-spy" in done.stderr, (
        done.stderr
    )
