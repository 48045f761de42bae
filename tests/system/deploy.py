"""Deploying the project's real units into the module's sandbox, with a test port and project."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.helpers import ROOT, build_project, free_port, solid_png, wait_for
from tests.support.sandbox import Sandbox

UNIT = "flipedit-preview.service"
SOCKET = "flipedit-preview.socket"


def tmp_accommodation(*paths: Path) -> str:
    """``PrivateTmp=no`` only when this checkout or the test's files live under /tmp or /var/tmp.

    The unit gives the daemon a private /tmp; a checkout (and its venv) or a pytest temporary
    directory there would be invisible to it. Installed daemons never live there, and the
    hardening test checks the unit file itself, PrivateTmp=yes included.
    """
    hidden = any(str(p.resolve()).startswith(("/tmp/", "/var/tmp/")) for p in (ROOT, *paths))
    return "PrivateTmp=no\n" if hidden else ""


@dataclass
class Deployed:
    box: Sandbox
    port: int
    url: str
    project: Path
    since: float = 0.0

    def show(self, *props: str) -> dict[str, str]:
        return self.box.show(UNIT, *props)

    @property
    def auth(self) -> dict[str, str]:
        """The header that lets a request change the timeline over TCP: the token the daemon wrote in its runtime "
        "directory."""
        token = self.box.run("cat", "/run/user/0/flipedit-preview/token").stdout.strip()
        return {"Authorization": f"Bearer {token}"}

    def main_pid(self) -> int:
        return int(self.show("MainPID")["MainPID"])

    def journal(self, **matches: str) -> list[dict[str, Any]]:
        """This deployment's entries only: the sandbox's journal outlives a test."""
        entries = self.box.journal(f"_SYSTEMD_USER_UNIT={UNIT}", *(f"{k}={v}" for k, v in matches.items()))
        return [e for e in entries if int(e["__REALTIME_TIMESTAMP"]) / 1e6 >= self.since]


@pytest.fixture
def deployed(sandbox: Sandbox, tmp_path: Path) -> Iterator[Any]:
    tmp_path.chmod(0o755)
    deployments: list[Deployed] = []

    def deploy(env: dict[str, str] | None = None, args: str = "") -> Deployed:
        red = solid_png(tmp_path / "red.png", (64, 64), (255, 0, 0))
        db = tmp_path / "project.sqlite"
        if not db.exists():
            build_project(
                db, 3, [{"name": "t", "order": 0, "clips": [{"source": red, "rect": (0, 0, 640, 360), "end": 100_000}]}]
            )
        port = free_port()
        environment = " ".join(f"{k}={v}" for k, v in {"XDG_CONFIG_HOME": str(tmp_path), **(env or {})}.items())
        sandbox.install_units(
            ROOT / "systemd",
            {
                SOCKET: (
                    f"[Socket]\nListenStream=\nListenStream=127.0.0.1:{port}\nListenStream=%t/flipedit-preview.sock\n"
                ),
                UNIT: (
                    f"[Service]\nExecStart=\nExecStart={ROOT}/.venv/bin/flipedit-previewd --project {db} {args}\n"
                    f"Environment={environment}\n{tmp_accommodation(tmp_path)}"
                ),
            },
        )
        sandbox.systemctl("reset-failed", check=False)
        sandbox.systemctl("start", SOCKET)
        d = Deployed(sandbox, port, f"http://127.0.0.1:{port}", db, time.time())
        deployments.append(d)
        return d

    yield deploy
    sandbox.systemctl("stop", SOCKET, UNIT, check=False)
    sandbox.systemctl("reset-failed", check=False)


def wait_active(d: Deployed, timeout: float = 30) -> None:
    assert wait_for(lambda: d.show("ActiveState")["ActiveState"] == "active", timeout), d.show(
        "ActiveState", "SubState", "Result"
    )
