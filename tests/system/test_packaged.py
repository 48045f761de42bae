"""The Debian package, as installed files, under real systemd with Debian's own python3 and python3-* packages.

scripts/test.sh builds the .deb in a clean directory (packaging/build-deb.sh, lintian included),
installs its dependencies from Debian and unpacks it into build/deb/root
(packaging/prepare-install-test.sh). The units, the catalog, the daemon and previewctl used here are
the unpacked ones; the interpreter is /usr/bin/python3, not the project's virtual environment.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import requests

from flipedit_previewd.common.journal import MESSAGE_IDS
from tests.support.helpers import ROOT, build_project, free_port, wait_for
from tests.support.sandbox import Sandbox
from tests.system.deploy import SOCKET, UNIT, tmp_accommodation

PKG = ROOT / "build/deb/root"
SITE = PKG / "usr/lib/python3/dist-packages"


@pytest.fixture(scope="module")
def installed(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    if not (PKG / "usr/bin/flipedit-previewd").exists():
        pytest.skip("no unpacked package: run packaging/prepare-install-test.sh (scripts/test.sh does)")
    tmp = tmp_path_factory.mktemp("packaged")
    tmp.chmod(0o755)
    from flipedit_previewd.demo.fixtures import make_still

    still = make_still(tmp / "still.png", (320, 180))
    db = tmp / "project.sqlite"
    build_project(
        db, 2, [{"name": "t", "order": 0, "clips": [{"source": still, "rect": (0, 0, 640, 360), "end": 100_000}]}]
    )
    port = free_port()
    sandbox.install_units(
        PKG / "usr/lib/systemd/user",
        {
            SOCKET: f"[Socket]\nListenStream=\nListenStream=127.0.0.1:{port}\nListenStream=%t/flipedit-preview.sock\n",
            UNIT: (
                f"[Service]\nExecStart=\nExecStart=/usr/bin/python3 {PKG}/usr/bin/flipedit-previewd --project {db}\n"
                f"Environment=PYTHONPATH={SITE} XDG_CONFIG_HOME={tmp}\n{tmp_accommodation(tmp)}"
            ),
        },
    )
    sandbox.systemctl("reset-failed", check=False)
    sandbox.systemctl("start", SOCKET)
    yield {"box": sandbox, "url": f"http://127.0.0.1:{port}", "since": time.time()}
    sandbox.systemctl("stop", SOCKET, UNIT, check=False)


def test_installed_units_socket_activation_and_debian_python(installed: dict[str, object]) -> None:
    box, url = installed["box"], str(installed["url"])
    assert isinstance(box, Sandbox)
    assert box.show(UNIT, "ActiveState")["ActiveState"] == "inactive"
    frame = requests.get(url + "/get_frame/0", timeout=30)
    assert frame.status_code == 200 and frame.content[:2] == b"\xff\xd8"
    assert wait_for(lambda: box.show(UNIT, "ActiveState")["ActiveState"] == "active", 10)
    pid = box.show(UNIT, "MainPID")["MainPID"]
    exe = os.readlink(f"/proc/{pid}/exe")
    assert exe.startswith("/usr/bin/python3"), exe  # Debian's interpreter, not the venv
    health = box.run(
        "/usr/bin/python3", f"{PKG}/usr/bin/previewctl", "health", "--json", env={"PYTHONPATH": str(SITE)}
    ).stdout
    assert json.loads(health)["status"] == "ok"


def test_installed_units_watchdog_restart(installed: dict[str, object]) -> None:
    box, url = installed["box"], str(installed["url"])
    assert isinstance(box, Sandbox)
    requests.get(url + "/health", timeout=30)
    assert wait_for(lambda: box.show(UNIT, "ActiveState")["ActiveState"] == "active", 10)
    before = int(box.show(UNIT, "NRestarts")["NRestarts"])
    os.kill(int(box.show(UNIT, "MainPID")["MainPID"]), signal.SIGSTOP)
    started = time.monotonic()
    assert wait_for(lambda: int(box.show(UNIT, "NRestarts")["NRestarts"]) > before, 15, 0.05)
    elapsed = time.monotonic() - started
    print(f"\npackaged: SIGSTOP -> restart in {elapsed:.2f} s")
    assert elapsed <= 5 + 1 + 2
    assert requests.get(url + "/health", timeout=30).json()["status"] == "ok"


def test_catalog_explains_entries_with_journalctl_x(installed: dict[str, object]) -> None:
    box = installed["box"]
    assert isinstance(box, Sandbox)
    # Inside the sandbox's mount namespace only: the system's catalogs plus the package's, bound over
    # /usr/lib/systemd/catalog, and a tmpfs for the compiled database.
    box.run("mkdir", "-p", "/run/systemd/catalog")
    box.run("sh", "-c", "cp /usr/lib/systemd/catalog/*.catalog /run/systemd/catalog/")
    box.run("cp", str(PKG / "usr/lib/systemd/catalog/flipedit-previewd.catalog"), "/run/systemd/catalog/")
    box.run("mount", "--bind", "/run/systemd/catalog", "/usr/lib/systemd/catalog")
    box.run("mount", "-t", "tmpfs", "tmpfs", "/var/lib/systemd/catalog")
    box.run("journalctl", "--update-catalog")
    listed = box.run("journalctl", "--list-catalog", "--no-pager").stdout
    for message_id in MESSAGE_IDS.values():
        assert message_id in listed
    shown = box.run("journalctl", "-x", "--no-pager", f"MESSAGE_ID={MESSAGE_IDS['ready']}", "-n", "1").stdout
    assert "Subject: FlipEdit preview daemon ready" in shown or "FlipEdit preview daemon ready" in shown, shown[-500:]
