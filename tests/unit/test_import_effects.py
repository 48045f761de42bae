"""Imports without side effects: the client loads nothing of the server, and libgcrypt is set up by entry points only.

Each check runs in a fresh interpreter (``sys.modules`` and libgcrypt's state are per process). Why libgcrypt
at all: ``common/gcrypt.py``; which processes set it up: the daemon's ``__main__`` and the worker's entry
(``worker.main.child_main``), each before anything can load PyAV; the demo's media are written by a child
process of their own (``demo/project.py``), which does the same.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from pathlib import Path

import pytest

CLIENT = ("flipedit_previewd.client", "flipedit_previewd.client.api", "flipedit_previewd.client.transport")
SERVER_PACKAGES = (
    "flipedit_previewd.http",
    "flipedit_previewd.app",
    "flipedit_previewd.render",
    "flipedit_previewd.worker",
    "flipedit_previewd.sd",
    "flipedit_previewd.timeline",
    "flipedit_previewd.demo",
    "flipedit_previewd.__main__",
)
INITIALISED = "bool(ctypes.CDLL('libgcrypt.so.20').gcry_control(39, 0))"  # GCRYCTL_INITIALIZATION_FINISHED_P


def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *args], capture_output=True, text=True, check=True
    )


def need_libgcrypt() -> None:
    try:
        ctypes.CDLL("libgcrypt.so.20")
    except OSError:
        pytest.skip("no libgcrypt on this machine")


def test_importing_the_client_loads_no_server_module_no_h11_and_no_libgcrypt() -> None:
    code = (
        "import json, sys\n"
        + "".join(f"import {name}\n" for name in CLIENT)
        + "maps = open('/proc/self/maps').read()\n"
        "print(json.dumps({'modules': sorted(sys.modules), 'libgcrypt': 'libgcrypt' in maps, 'libsystemd': "
        "'libsystemd' in maps}))"
    )
    out = python(code)
    found = json.loads(out.stdout)
    modules = found["modules"]
    assert set(CLIENT) <= set(modules)
    assert [m for m in modules if m.startswith(SERVER_PACKAGES)] == []
    assert [m for m in modules if m.split(".")[0] in ("h11", "systemd", "av", "PIL", "numpy", "sdnotify")] == []
    assert "flipedit_previewd.common.gcrypt" not in modules and "ctypes" not in modules
    assert not found["libgcrypt"] and not found["libsystemd"]  # not even loaded, let alone initialised
    timed = [line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")]
    assert "flipedit_previewd.client.api" in timed and not [m for m in timed if m.startswith(SERVER_PACKAGES)]


def test_importing_the_package_leaves_libgcrypt_to_the_program() -> None:
    need_libgcrypt()
    out = python(f"import ctypes, flipedit_previewd, flipedit_previewd.client.api\nprint({INITIALISED})")
    assert out.stdout.strip() == "False"  # someone else's program decides how libgcrypt is set up, not our import


def test_the_daemon_entry_initialises_libgcrypt_without_secure_memory() -> None:
    need_libgcrypt()
    out = python(
        f"import ctypes\nfrom flipedit_previewd.__main__ import main\nmain(['--version'])\nprint({INITIALISED})"
    )
    assert out.stdout.split()[-1] == "True" and "insecure memory" not in out.stderr


def test_the_worker_entry_initialises_libgcrypt_before_anything_else() -> None:
    """What keeps libssh (loaded by Debian's FFmpeg) from setting up mlock()ed memory ("using insecure memory")."""
    need_libgcrypt()
    code = (
        "import ctypes, sys\nfrom flipedit_previewd.worker import main as pool\n"
        f"before = {INITIALISED}\n"
        "sys.argv = ['worker', 'flipedit-previewd-worker-0', '-1']  # no pipe: the entry fails right after its first "
        "step\n"
        "try:\n    pool.child_main()\nexcept (OSError, ValueError):\n    pass\n"
        f"print(before, {INITIALISED}, 'av' in sys.modules)"
    )
    assert python(code).stdout.split() == ["False", "True", "False"]


def test_the_demo_project_is_written_by_a_child_process(tmp_path: Path) -> None:
    """``--demo``: the daemon's own process never imports the writers (PyAV, Pillow) to make the demo media."""
    code = (
        "import json, sys\nfrom pathlib import Path\nfrom flipedit_previewd.demo.project import demo_project\n"
        "db = demo_project(Path(sys.argv[1]))\n"
        "print(json.dumps({'db': db, 'modules': sorted(m for m in sys.modules if m.split('.')[0] in "
        "('av', 'PIL', 'numpy') or m == 'flipedit_previewd.demo.fixtures')}))"
    )
    found = json.loads(python(code, str(tmp_path)).stdout)
    assert found["modules"] == [] and Path(found["db"]).is_file() and Path(found["db"]).parent == tmp_path
    assert (tmp_path / "demo_clip.mp4").is_file() and (tmp_path / "demo_still.png").is_file()
    again = json.loads(python(code, str(tmp_path)).stdout)  # made once: the second start finds it
    assert again == found
