"""The fd-store hand-over's decisions that need no service manager (the rest: tests/system/test_fdstore.py)."""

from __future__ import annotations

import asyncio

from flipedit_previewd.fdstore import CONNECTION_PREFIX, Handover, is_stored_connection, notify


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
