"""The fd-store hand-over's decisions that need no service manager (the rest: tests/system/test_fdstore.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from flipedit_previewd.sd.fdstore import CONNECTION_PREFIX, Handover, is_stored_connection
from flipedit_previewd.sd.notify import notify


def test_stored_connections_are_told_from_listening_sockets_by_name() -> None:
    assert is_stored_connection(f"{CONNECTION_PREFIX}123-4")
    assert not is_stored_connection("flipedit-preview")  # the socket unit's FileDescriptorName=
    assert not is_stored_connection("stored")  # systemd's default FDNAME: not ours


def test_without_a_service_manager_the_store_is_off_and_nothing_is_reported_refused() -> None:
    handover = Handover(True, 1024, environ={})
    asyncio.run(handover.start(lambda sock: asyncio.sleep(0)))
    assert not handover.enabled and not handover.refused and handover.probe_result == "no NOTIFY_SOCKET"
    assert not notify("FDSTORE=1", [], environ={})


def test_systemd_254_announced_store_size_caps_the_hand_over() -> None:
    assert Handover(True, 1024, environ={"FDSTORE": "16"}).limit == 16
    assert Handover(True, 8, environ={"FDSTORE": "16"}).limit == 8
    assert Handover(True, 8, environ={}).limit == 8


def test_own_unit_from_unified_and_hybrid_cgroup_files(tmp_path: Path) -> None:
    from flipedit_previewd.sd.fdstore import own_unit

    unified = tmp_path / "unified"
    unified.write_text("0::/user.slice/user-1000.slice/user@1000.service/app.slice/flipedit-preview.service\n")
    assert own_unit(str(unified)) == ("flipedit-preview.service", True)
    hybrid = tmp_path / "hybrid"
    hybrid.write_text(
        "4:memory:/system.slice/flipedit-preview.service\n"
        "1:name=systemd:/system.slice/flipedit-preview.service\n0::/system.slice/flipedit-preview.service\n"
    )
    assert own_unit(str(hybrid)) == ("flipedit-preview.service", False)
    assert own_unit(str(tmp_path / "missing")) == ("", False)
    bare = tmp_path / "bare"
    bare.write_text("0::/\n")
    assert own_unit(str(bare)) == ("", False)


def test_only_a_queued_restart_keeps_the_handover() -> None:
    from flipedit_previewd.sd.fdstore import Handover

    for job, kept in (("restart", True), ("stop", False), ("", False)):
        handover = Handover(True, 10, environ={})
        handover.enabled = True  # as after a successful probe
        handover.expect_restart(job)
        assert handover.enabled is kept, job
