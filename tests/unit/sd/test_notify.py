"""sd/notify.py, the daemon's one sender to $NOTIFY_SOCKET, against a real datagram socket standing in for systemd."""

from __future__ import annotations

import array
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flipedit_previewd.sd.notify import barrier, notify, notify_address


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[socket.socket, dict[str, str]]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(5)
    with sock:
        yield sock, {"NOTIFY_SOCKET": str(path)}


def receive(sock: socket.socket) -> tuple[str, list[int]]:
    data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(16 * 4))
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return data.decode(), list(fds)


def test_the_lifecycle_messages_arrive_as_one_datagram_each(manager: tuple[socket.socket, dict[str, str]]) -> None:
    sock, environ = manager
    messages = [
        "READY=1\nSTATUS=serving\nMAINPID=42",
        "WATCHDOG=1",
        "RELOADING=1\nMONOTONIC_USEC=123\nSTATUS=reloading",
        "STOPPING=1\nSTATUS=stopping: draining",
    ]
    for message in messages:
        assert notify(message, environ=environ)
    assert [receive(sock) for _ in messages] == [(message, []) for message in messages]


def test_descriptors_travel_with_the_message_and_ours_may_be_closed_at_once(
    manager: tuple[socket.socket, dict[str, str]],
) -> None:
    sock, environ = manager
    read_end, write_end = os.pipe()
    assert notify("FDSTORE=1\nFDNAME=flipedit-conn-1", [write_end], environ)
    os.close(write_end)  # the kernel holds the one in flight
    text, fds = receive(sock)
    assert text == "FDSTORE=1\nFDNAME=flipedit-conn-1" and len(fds) == 1
    os.write(fds[0], b"x")  # the manager's copy is the same pipe
    assert os.read(read_end, 1) == b"x"
    os.close(fds[0])
    os.close(read_end)


def test_the_barrier_waits_until_the_manager_closes_its_descriptor(
    manager: tuple[socket.socket, dict[str, str]],
) -> None:
    sock, environ = manager

    def systemd() -> None:
        text, fds = receive(sock)
        assert text == "BARRIER=1" and len(fds) == 1
        for fd in fds:
            os.close(fd)

    thread = threading.Thread(target=systemd)
    thread.start()
    assert barrier(timeout=5, environ=environ)
    thread.join()


def test_a_barrier_nobody_answers_times_out(manager: tuple[socket.socket, dict[str, str]]) -> None:
    sock, environ = manager
    assert not barrier(timeout=0.05, environ=environ)
    _, fds = receive(sock)
    for fd in fds:
        os.close(fd)


def test_without_a_usable_notify_socket_nothing_is_sent(tmp_path: Path) -> None:
    assert notify_address({}) is None and not notify("READY=1", environ={})
    assert notify_address({"NOTIFY_SOCKET": "relative/path"}) is None  # as libsystemd: absolute or abstract only
    assert notify_address({"NOTIFY_SOCKET": "@abstract"}) == "\0abstract"
    assert not notify(
        "READY=1", environ={"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")}
    )  # an error is False, not raised
    assert not barrier(timeout=0.05, environ={})


def test_an_abstract_address_is_reached() -> None:
    name = f"flipedit-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert notify("READY=1", environ={"NOTIFY_SOCKET": "@" + name})
        assert receive(sock) == ("READY=1", [])
