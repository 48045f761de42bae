"""Shared fixtures: the layer markers, a real daemon process, and the systemd sandbox."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import ROOT, free_port  # noqa: E402
from sandbox import Sandbox, SandboxError, leftovers  # noqa: E402

LAYERS = ("unit", "integration", "system")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", help="long modes: 50,000 fuzz cases instead of 2,000")


@pytest.fixture(scope="session")
def fuzz_examples(request: pytest.FixtureRequest) -> int:
    return 50_000 if request.config.getoption("--long") else 2_000


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for layer in LAYERS:
            if f"/tests/{layer}/" in str(item.path):
                item.add_marker(getattr(pytest.mark, layer))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true a skipped system test is a failure: CI must prove the systemd behaviour."""
    if os.environ.get("CI") != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped = [r for r in reporter.stats.get("skipped", []) if "/tests/system/" in str(getattr(r, "fspath", "")) or "tests/system/" in r.nodeid]
    if skipped:
        reporter.write_line(f"CI=true: {len(skipped)} system test(s) skipped; failing the run", red=True)
        session.exitstatus = 1
    left = {k: v for k, v in leftovers().items() if v}
    if left:
        reporter.write_line(f"the test run left things behind: {left}", red=True)
        session.exitstatus = 1


class Daemon:
    """A real flipedit-previewd process on a real socket."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, tmp: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = args
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.env.pop("LISTEN_FDS", None)
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.setdefault("XDG_CONFIG_HOME", str(tmp or ROOT))
        self.log_path = (tmp or Path("/tmp")) / f"daemon-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Daemon:
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(ROOT / ".venv/bin/flipedit-previewd"), "--listen", f"127.0.0.1:{self.port}", *self.args],
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.log()}")
            try:
                if requests.get(self.url + "/health", timeout=1).ok and "ready:" in self.log():
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"daemon not ready: {self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return requests.get(self.url + path, **kwargs)

    def health(self) -> dict[str, Any]:
        return dict(self.get("/health").json())

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        # The daemon's process group holds its workers: end them by that group's id.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(timeout=5)
        return self.proc.returncode


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Any]:
    started: list[Daemon] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Daemon:
        daemon = Daemon(list(args), env, tmp_path)
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    try:
        box = Sandbox()
        box.start()
    except SandboxError as exc:
        pytest.skip(f"systemd sandbox unavailable: {exc}")
    try:
        yield box
    finally:
        box.stop()


def can_connect(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0
