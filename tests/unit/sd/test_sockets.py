"""sd/sockets.py with real sockets: what systemd passes (``$LISTEN_FDS`` from fd 3 on), and ``--listen`` addresses.

Adoption runs in a child interpreter: the descriptors must sit at 3, 4, ... as systemd puts them, which the
test process cannot promise; the child arranges them, sets ``LISTEN_*`` for itself and reports back as JSON.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flipedit_previewd.sd.sockets import SocketError, describe, kernel_backlog, open_listener

CHILD = r"""
import json, os, socket, sys
from flipedit_previewd.sd.sockets import SocketError, adopt_systemd_sockets

def make(kind):
    if kind == "tcp":
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); return s
    if kind == "unix":
        s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[2]); s.listen(); return s
    if kind == "unlistened":
        s = socket.socket(); s.bind(("127.0.0.1", 0)); return s
    if kind == "dgram":
        return socket.socket(type=socket.SOCK_DGRAM)
    if kind == "conn":
        a, b = socket.socketpair(); make.keep.append(b); return a
    if kind == "pipe":
        r, w = os.pipe(); make.keep.append(w); return r
make.keep = []

spec = json.loads(sys.argv[1])
held = [make(kind) for kind, _ in spec["fds"]]
fds = [h if isinstance(h, int) else h.detach() for h in held]
parked = [os.dup2(fd, 300 + i) for i, fd in enumerate(fds)]  # out of the way first: the originals may sit at 3, 4
for fd in fds:
    os.close(fd)
for i, fd in enumerate(parked):
    os.dup2(fd, 3 + i, inheritable=False)
    os.close(fd)
os.environ.update({"LISTEN_PID": str(os.getpid() + spec.get("pid_offset", 0)), "LISTEN_FDS": str(len(held)),
                   "LISTEN_FDNAMES": ":".join(name for _, name in spec["fds"])})
stored = {} if spec.get("keep_stored", True) else None
try:
    listeners = adopt_systemd_sockets(stored)
except SocketError as exc:
    print(json.dumps({"error": str(exc)})); sys.exit(0)
print(json.dumps({
    "listeners": [{"fd": l.sock.fileno(), "name": l.name, "address": l.address, "adopted": l.adopted,
                   "blocking": l.sock.getblocking()} for l in listeners],
    "stored": {str(fd): name for fd, name in (stored or {}).items()},
    "open": sorted(fd for fd in range(3, 3 + len(held)) if os.path.exists(f"/proc/self/fd/{fd}")),
}))
"""


def adopt(tmp_path: Path, fds: list[tuple[str, str]], **spec: Any) -> dict[str, Any]:
    argv = [sys.executable, "-c", CHILD, json.dumps({"fds": fds, **spec}), str(tmp_path / "s.sock")]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_systemds_listening_sockets_are_adopted_with_their_names(tmp_path: Path) -> None:
    found = adopt(tmp_path, [("tcp", "flipedit-preview"), ("unix", "flipedit-preview-unix")])
    listeners = found["listeners"]
    assert [(x["fd"], x["name"], x["adopted"], x["blocking"]) for x in listeners] == [
        (3, "flipedit-preview", True, False),
        (4, "flipedit-preview-unix", True, False),
    ]
    assert listeners[0]["address"].startswith("127.0.0.1:") and listeners[1]["address"] == f"unix:{tmp_path / 's.sock'}"


def test_connections_a_previous_instance_stored_are_set_aside_not_listened_on(tmp_path: Path) -> None:
    found = adopt(tmp_path, [("tcp", "flipedit-preview"), ("conn", "flipedit-conn-77-1")])
    assert [x["name"] for x in found["listeners"]] == ["flipedit-preview"]
    assert found["stored"] == {"4": "flipedit-conn-77-1"} and found["open"] == [3, 4]
    # nobody to hand them to: closed, not leaked
    found = adopt(tmp_path, [("tcp", "flipedit-preview"), ("conn", "flipedit-conn-77-1")], keep_stored=False)
    assert found["stored"] == {} and found["open"] == [3]


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("unlistened", "not listening; set Accept=no"),
        ("dgram", "not a stream socket; use ListenStream="),
        ("pipe", "is not a socket"),
    ],
)
def test_a_descriptor_that_cannot_serve_is_refused_with_its_fix(tmp_path: Path, kind: str, words: str) -> None:
    found = adopt(tmp_path, [(kind, "odd")])
    assert words in found["error"] and "fd 3 (odd)" in found["error"]


def test_sockets_meant_for_another_process_are_not_taken(tmp_path: Path) -> None:
    found = adopt(tmp_path, [("tcp", "flipedit-preview")], pid_offset=1)
    assert found["listeners"] == [] and found["stored"] == {}


def test_listen_addresses(tmp_path: Path) -> None:
    tcp = open_listener("127.0.0.1:0")
    with tcp.sock:
        assert not tcp.adopted and tcp.name == "listen" and not tcp.sock.getblocking()
        assert tcp.address == describe(tcp.sock) and tcp.address.startswith("127.0.0.1:")
        with socket.create_connection(tcp.sock.getsockname(), timeout=5):
            pass
    path = tmp_path / "d.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # left by a previous run: replaced, not an error
    stale.close()
    unix = open_listener(f"unix:{path}")
    with unix.sock:
        assert unix.address == f"unix:{path}" and unix.sock.family == socket.AF_UNIX
    with pytest.raises(SocketError, match="cannot listen on 'nowhere:port'"):
        open_listener("nowhere:port")
    regular = tmp_path / "file"
    regular.write_text("not a socket")
    with pytest.raises(SocketError):  # a regular file at the path is never removed
        open_listener(f"unix:{regular}")
    assert regular.read_text() == "not a socket"


def test_an_ipv6_address_is_written_in_brackets() -> None:
    if not socket.has_ipv6 or not os.path.exists("/proc/net/if_inet6"):
        pytest.skip("no IPv6 here")
    try:
        listener = open_listener("[::1]:0")
    except SocketError:
        pytest.skip("::1 not configured")
    with listener.sock:
        assert listener.address.startswith("[::1]:")


def test_the_backlog_is_the_kernels_cap() -> None:
    assert kernel_backlog() >= socket.SOMAXCONN
