"""The booted layer's one container per test session: the .deb installed, an unprivileged user with lingering.

The .deb is the one scripts/test.sh already built for the packaged-install system test
(build/deb, packaging/prepare-install-test.sh): one build per run. The container's root is the
machine's own (read-only overlay), so Debian's python3-* dependencies installed by that script are
there too; ``dpkg -i`` needs no network.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.booted.container import Container, ContainerError
from tests.booted.journey import INSIDE, INSIDE_IN_BOX, ROOT, USER, Booted


@pytest.fixture(scope="session")
def booted() -> Iterator[Booted]:
    debs = sorted((ROOT / "build/deb").glob("flipedit-previewd_*_all.deb"))
    if not debs:
        pytest.skip("no .deb: run packaging/prepare-install-test.sh (scripts/test.sh does)")
    box = Container()
    try:
        box.start()
    except ContainerError as exc:
        box.stop()
        pytest.skip(f"booted container unavailable: {exc}")
    try:
        # Copied in, not read through the overlay: the container has a /tmp (and /home) of its own, so a
        # checkout under /tmp or on another mount would not be visible inside (issue 27).
        deb = f"/root/{debs[-1].name}"
        box.run("sh", "-c", f"base64 -d > {deb}", input=base64.b64encode(debs[-1].read_bytes()).decode())
        box.run("dpkg", "-i", deb, timeout=120)
        box.run("mkdir", "-p", os.path.dirname(INSIDE_IN_BOX))
        for source in (INSIDE, ROOT / "tests/support/editor_client.py"):
            target = os.path.join(os.path.dirname(INSIDE_IN_BOX), source.name)
            box.run("sh", "-c", f"cat > {target} && chmod 0644 {target}", input=source.read_text())
        box.run("useradd", "-m", USER)
        box.run("loginctl", "enable-linger", USER)
        bus = f"/run/user/{box.uid(USER)}/bus"
        deadline = time.monotonic() + 30
        while box.run("test", "-S", bus, check=False).returncode != 0:
            assert time.monotonic() < deadline, "no user manager for the lingering user"
            time.sleep(0.2)
        home = f"/home/{USER}"
        state = Booted(box, USER, Path(deb), home, f"{home}/Videos/projects")
        state.inside("projects", state.projects)
        yield state
    finally:
        box.stop()
        assert not box.leftovers(), box.leftovers()
