"""The sandbox itself: it must start a real user manager and leave nothing behind."""

from __future__ import annotations

from tests.support.helpers import wait_for
from tests.support.sandbox import Sandbox, leftovers


def test_sandbox_runs_a_user_manager_and_cleans_up_by_pid() -> None:
    before = leftovers("sandboxes")
    with Sandbox() as box:
        assert box.systemctl("is-system-running", check=False).stdout.strip() in ("running", "degraded")
        assert box.run("test", "-S", "/run/systemd/journal/socket", check=False).returncode == 0
        box.run("systemd-cat", "-t", "sandbox-probe", "echo", "hello journal")
        # journald writes what it was sent in its own time (seconds on a loaded machine): the entry must appear
        assert wait_for(
            lambda: any(e.get("MESSAGE") == "hello journal" for e in box.journal("SYSLOG_IDENTIFIER=sandbox-probe")),
            15,
            0.2,
        )
        pids = box.cgroup_pids()
        assert box.pids["manager"] in pids
    after = leftovers("sandboxes")
    assert after == before  # on a booted machine the host's own journald and managers are there before and after
    assert not box.cgroup_pids()
