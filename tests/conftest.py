"""Shared fixtures: the layer markers, a real daemon process, and the systemd sandbox."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.booted.container import stale as booted_stale
from tests.support.helpers import Daemon
from tests.support.sandbox import Sandbox, SandboxError, leftovers

LAYERS = ("unit", "integration", "system", "booted")
ROOT = Path(__file__).resolve().parent.parent
# What was there before the session (a booted machine's own journald and user managers, the user's own daemon):
# only what appears during it is counted as left behind.
BEFORE: dict[str, dict[str, list[str]]] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", help="long modes: 50,000 fuzz cases instead of 2,000")


@pytest.fixture(scope="session")
def fuzz_examples(request: pytest.FixtureRequest) -> int:
    return 50_000 if request.config.getoption("--long") else 2_000


def pytest_sessionstart(session: pytest.Session) -> None:
    for where in ("anywhere", "sandboxes", "here"):
        BEFORE[where] = leftovers(where)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for layer in LAYERS:
            if f"/tests/{layer}/" in str(item.path):
                item.add_marker(getattr(pytest.mark, layer))
    # The booted layer last: its container (processes, cgroups) must not be alive while the system
    # layer checks that its sandboxes leave nothing behind; its session fixture ends with the run.
    items.sort(key=lambda item: "/tests/booted/" in str(item.path))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true a skipped system or booted test is a failure: CI must prove the systemd behaviour."""
    if os.environ.get("CI") != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped = [
        r
        for r in reporter.stats.get("skipped", [])
        if any(
            f"tests/{layer}/" in r.nodeid or f"/tests/{layer}/" in str(getattr(r, "fspath", ""))
            for layer in ("system", "booted")
        )
    ]
    if skipped:
        reporter.write_line(f"CI=true: {len(skipped)} system/booted test(s) skipped; failing the run", red=True)
        session.exitstatus = 1
    # scripts/test.sh runs the systemd layers and the others as two sessions at once: a session looks for
    # what it could have left behind (one that ran both kinds, for everything), not at the other's work.
    ran = {layer for item in session.items for layer in LAYERS if item.get_closest_marker(layer)}
    systemd, daemons = bool(ran & {"system", "booted"}), "integration" in ran
    where = "anywhere" if systemd and daemons else "sandboxes" if systemd else "here"
    before = BEFORE.get(where, {})
    left = {k: [x for x in v if x not in before.get(k, [])] for k, v in leftovers(where).items()}
    if where == "here":  # another checkout's tests may run beside this one: only this checkout's daemons count
        left["processes"] = [line for line in left["processes"] if str(ROOT) in line]
    left = {k: v for k, v in left.items() if v}
    containers = booted_stale() if systemd else []
    if containers:
        left["booted containers"] = containers
    if left:
        reporter.write_line(f"the test run left things behind: {left}", red=True)
        session.exitstatus = 1


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
    for daemon in started:  # whatever a test did, the daemon never dies of an unhandled exception
        assert "Traceback" not in daemon.log(), daemon.log()[-3000:]


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
