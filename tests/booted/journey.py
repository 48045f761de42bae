"""The booted journey's handle on the container, and the upgrade step (extendable with a no-retry client).

Commands run in the container (``Container.run``), as the user where the journey says so; the
editor's side runs inside too (inside.py), since the container's network is its own loopback.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.booted.container import Container

ROOT = Path(__file__).resolve().parents[2]
USER = "alice"
INSIDE = Path(__file__).with_name("inside.py")
# Where conftest copies inside.py in the container: the container has a /tmp (and /home) of its own, so a
# checkout there is not visible inside.
INSIDE_IN_BOX = "/usr/local/lib/flipedit-test/inside.py"


@dataclass
class Booted:
    box: Container
    user: str
    deb: Path
    home: str
    projects: str

    def as_user(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.box.run(*argv, user=self.user, check=check, timeout=timeout)

    def systemctl(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.as_user("systemctl", "--user", *argv, check=check)

    def show(self, unit: str, prop: str) -> str:
        return self.systemctl("show", unit, f"-p{prop}", "--value").stdout.strip()

    def inside(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.as_user("/usr/bin/python3", INSIDE_IN_BOX, *args, timeout=timeout)

    def frame(self, n: int = 0) -> dict[str, object]:
        return dict(json.loads(self.inside("frame", str(n)).stdout))

    def previewctl(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return self.as_user("previewctl", *args, check=check, timeout=90)

    def wait_active(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.show("flipedit-preview.service", "ActiveState") != "active":
            assert time.monotonic() < deadline, self.systemctl(
                "status", "flipedit-preview.service", "--no-pager", check=False
            ).stdout
            time.sleep(0.2)


def newer_build(b: Booted, version_suffix: str = "+booted1") -> tuple[str, str]:
    """A newer build of the installed package, repacked inside the container: (path, version)."""
    work = "/root/newer"
    b.box.run("rm", "-rf", work, f"{work}.deb")
    b.box.run("dpkg-deb", "-R", str(b.deb), work)
    old = b.box.run("dpkg-deb", "-f", str(b.deb), "Version").stdout.strip()
    new = old + version_suffix
    init = f"{work}/usr/lib/python3/dist-packages/flipedit_previewd/__init__.py"
    b.box.run("sed", "-i", f"s/^Version: .*/Version: {new}/", f"{work}/DEBIAN/control")
    b.box.run("sed", "-i", f's/^__version__ = .*/__version__ = "{new}"/', init)
    b.box.run("dpkg-deb", "-b", work, f"{work}.deb")
    return f"{work}.deb", new


def upgrade_while_editor_asks(
    b: Booted, deb: str, *, retrying: bool = True, then: tuple[str, ...] = ("restart",)
) -> dict[str, object]:
    """``dpkg -i deb`` (and the service manager steps in ``then``) while the editor asks for frames.

    The integrator can call it with ``retrying=False`` (a keep-alive client that never retries) once
    restarts keep connections. Returns the client's counts, failures and the versions it saw.
    """
    out, stop, pool_out = f"{b.home}/editor.json", f"{b.home}/editor.stop", f"{b.home}/pool.json"
    b.as_user("rm", "-f", out, stop, pool_out)
    user = ["runuser", "-u", b.user, "--", "env", f"HOME={b.home}", "/usr/bin/python3", INSIDE_IN_BOX]
    argv = [*user, "editor", out, stop]
    if not retrying:
        argv.append("--no-retry")
    client = subprocess.Popen(
        ["nsenter", "-t", str(b.box.init_pid), "-a", *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    # Beside it, the editor's own habit without any retry (issue 18): 4 pooled connections that must survive.
    pool = subprocess.Popen(
        ["nsenter", "-t", str(b.box.init_pid), "-a", *user, "pool", pool_out, stop],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(2)
        b.box.run("dpkg", "-i", deb, timeout=120)
        time.sleep(1)
        for step in then:
            b.systemctl(step, "flipedit-preview.service")
        b.wait_active()
        time.sleep(2)
    finally:
        b.as_user("touch", stop)
        for process in (client, pool):
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
    assert client.returncode == 0, client.stdout.read().decode() if client.stdout else ""
    assert pool.returncode == 0, pool.stdout.read().decode() if pool.stdout else ""
    return {**json.loads(b.as_user("cat", out).stdout), "pool": json.loads(b.as_user("cat", pool_out).stdout)}
