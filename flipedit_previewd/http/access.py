"""Who may talk to the daemon, and who may change what it shows.

The editor's port is reachable by every local program, and by web pages through
the user's browser (DNS rebinding: a hostile name resolving to 127.0.0.1). So:

- every request's ``Host`` must name the daemon itself (``127.0.0.1:PORT``,
  ``localhost:PORT``, ``[::1]:PORT``; anything on the unix socket), or the
  configured ``allowed_hosts``; otherwise 421;
- a request a browser made for a page (``Origin``, or ``Sec-Fetch-Site`` other
  than ``none``) is refused with 403; the editor's Dart client sends neither;
- state-changing requests (``PUT``/``DELETE /timeline``, ``POST``/``DELETE /proxies``) come only from the
  daemon's own user: on the unix socket by ``SO_PEERCRED``, over TCP with the
  bearer token the daemon writes at start to a 0600 file only that user can read.

A body is read only for a request that may carry one (``BODY_ENDPOINTS``) and only after these
checks passed: they run on the request's head (``connection.py``), so an unauthorised body is never
buffered. Refusals go to the one summarised path for the client's faults (``rejections.ClientErrors``):
counted, journaled once per status per minute whoever sends them, so a flood cannot flood the journal.
Connections are grouped per client by ``client_key``.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flipedit_previewd.common.errors import Forbidden, Misdirected, PayloadTooLarge, Unauthorized
from flipedit_previewd.http.protocol import Request

STATE_CHANGING = {"PUT", "DELETE", "POST", "PATCH"}
GUARDED_PATHS = {"/timeline", "/proxies"}  # endpoints that change state; add any later one here


def is_private_read(path: str) -> bool:
    """What shows the user's media or where it is: frames, the timeline, the debug views (private_reads).
    /health and /metrics stay open: monitoring reads them, and they carry counts, not pictures."""
    return path.startswith(("/get_frame/", "/debug/")) or path in ("/timeline", "/proxies")


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
BODY_ENDPOINTS = {("PUT", "/timeline")}  # the only requests that carry a body; any other body is refused unread


@dataclass(frozen=True)
class Peer:
    """What the kernel says about the other end of a connection; nothing the client claims."""

    family: str  # "unix" or "tcp"
    address: str = ""  # client IP, or "uid N" on the unix socket
    uid: int | None = None  # unix socket only (SO_PEERCRED)
    local_port: int | None = None  # TCP only: the port the client connected to


def peer_of(transport: Any) -> Peer:
    sock = transport.get_extra_info("socket")
    family = getattr(sock, "family", None)
    if family == socket.AF_UNIX:
        uid: int | None = None
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            uid = struct.unpack("3i", raw)[1]
        except (OSError, struct.error):
            pass
        return Peer("unix", f"uid {uid}", uid)
    peer = transport.get_extra_info("peername")
    local = transport.get_extra_info("sockname")
    return Peer(
        "tcp",
        str(peer[0]) if isinstance(peer, tuple) else "?",
        local_port=local[1] if isinstance(local, tuple) and len(local) >= 2 else None,
    )


def client_key(peer: Peer | None) -> str:
    """Who a connection counts as, for per-client shares: the uid on the unix socket; one key for all of
    loopback (every local program reaches 127.0.0.1 and may pick any address of 127/8 or ::1 as its source,
    so a key per address would let one program be 16 million clients); the address otherwise."""
    if peer is None:
        return "?"
    if peer.family == "unix":
        return peer.address
    try:
        address = ipaddress.ip_address(peer.address.split("%", 1)[0])
    except ValueError:
        return peer.address
    mapped = getattr(address, "ipv4_mapped", None)
    if address.is_loopback or (mapped is not None and mapped.is_loopback):
        return "loopback"
    return peer.address


class Guard:
    """The checks every request passes on its head, before its body is read and before routing; raises the
    refusal and reports it to ``note`` (``ClientErrors.note``: counted, journaled once per status per minute)."""

    def __init__(
        self,
        allowed_hosts: tuple[str, ...] | list[str],
        token: str,
        note: Callable[..., None],
        own_uid: int | None = None,
        private_reads: bool = False,
    ) -> None:
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.token = token
        self.note = note
        self.own_uid = os.getuid() if own_uid is None else own_uid
        self.private_reads = private_reads
        self.refused = 0

    def check(self, request: Request, peer: Peer | None, body_length: int | None = 0) -> None:
        """``body_length``: the declared body (Content-Length; None for a chunked one), checked against "
        "``BODY_ENDPOINTS``."""
        if peer is None:
            return  # called without a connection (unit tests of routing): nothing to check against
        try:
            self._check(request, peer)
            if body_length != 0 and (request.method, request.path) not in BODY_ENDPOINTS:
                raise PayloadTooLarge(f"{request.method} {request.path[:80]} takes no request body", field="body")
        except (Forbidden, Misdirected, Unauthorized, PayloadTooLarge) as exc:
            self.refused += 1
            self._note(request, peer, exc)
            raise

    def _check(self, request: Request, peer: Peer) -> None:
        headers = request.headers
        # HTTP/1.0 may omit Host (browsers never do, so this opens nothing to a web page); h11 refuses an
        # HTTP/1.1 request without one (400, test_protocol), so a missing Host here is an HTTP/1.0 request.
        host = headers.get("host")
        if peer.family == "tcp" and host is not None and not self.host_allowed(host, peer.local_port):
            raise Misdirected("Host must name this daemon (127.0.0.1, localhost or [::1] and its port)", field="host")
        if not self.own_page(request, peer):
            if "origin" in headers:
                raise Forbidden("requests from web pages (Origin) are refused", field="origin")
            fetch_site = headers.get("sec-fetch-site")
            if fetch_site is not None and fetch_site.strip().lower() != "none":
                raise Forbidden("requests from web pages (Sec-Fetch-Site) are refused", field="sec-fetch-site")
        if request.method in STATE_CHANGING and request.path in GUARDED_PATHS:
            self.check_owner(headers, peer)
        elif self.private_reads and is_private_read(request.path):
            self.check_owner(headers, peer, "reading frames and timelines (private_reads)")

    def own_page(self, request: Request, peer: Peer) -> bool:
        """A GET from the daemon's own viewer page (``viewer.py``): same-origin by the browser's word,
        to a loopback name and this port (never an ``allowed_hosts`` name, never ``*``: a rebound
        name is another origin), and an ``Origin``, if any, that is this very origin."""
        headers = request.headers
        if request.method not in ("GET", "HEAD") or peer.family != "tcp":
            return False
        if (headers.get("sec-fetch-site") or "").strip().lower() != "same-origin":
            return False
        host = (headers.get("host") or "").strip().lower()
        if host not in {f"{name}:{peer.local_port}" for name in LOOPBACK_NAMES}:
            return False
        origin = headers.get("origin")
        return origin is None or origin.strip().lower() == f"http://{host}"

    def host_allowed(self, host: str | None, port: int | None) -> bool:
        if "*" in self.allowed_hosts:
            return True
        if not host or "," in host:
            return False
        host = host.strip().lower()
        if host in self.allowed_hosts:
            return True
        names = [f"{name}:{port}" for name in LOOPBACK_NAMES]
        if port == 80:
            names += list(LOOPBACK_NAMES)
        return host in names

    def check_owner(self, headers: Mapping[str, str], peer: Peer, what: str = "changing the timeline") -> None:
        if peer.family == "unix":
            if peer.uid is None or peer.uid != self.own_uid:
                raise Forbidden(f"only the daemon's own user may go on {what}", field="peer")
            return
        auth = headers.get("authorization", "")
        scheme, _, given = auth.partition(" ")
        if not auth or scheme.lower() != "bearer":
            raise Unauthorized(
                f"{what} over TCP needs 'Authorization: Bearer <token>' "
                "(the token file in $XDG_RUNTIME_DIR/flipedit-preview/), or use the unix socket",
                field="authorization",
            )
        if not self.token or not hmac.compare_digest(given.strip().encode("latin-1", "replace"), self.token.encode()):
            raise Forbidden("wrong token", field="authorization")

    def _note(self, request: Request, peer: Peer, exc: Any) -> None:
        self.note(
            exc.status,
            f"{exc.status} to {peer.address}: {exc.detail} ({request.method} {request.target[:200]})",
            "access_denied",
            CLIENT=peer.address,
            METHOD=request.method,
            PATH=request.target,
            HOST=request.headers.get("host"),
            ORIGIN=request.headers.get("origin"),
            REASON=exc.detail,
        )
