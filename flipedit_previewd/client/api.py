"""A correct client for the preview daemon: the reference for the editor's authors.

- One ``requests.Session`` with pooled keep-alive connections (TCP or a unix socket).
- urllib3's ``Retry`` for GET/HEAD: connection errors and dropped connections are retried with
  jittered exponential backoff, a 503 is retried after the ``Retry-After`` the daemon sent.
  No hand-written backoff loop.
- A circuit breaker: after repeated failures it fails fast, then probes ``/health`` before
  letting traffic through again, so a dead daemon is not hammered.
- ``LatestFrame``: for UI bursts (a drag asks for the same frame many times a second). A new
  submission replaces the one waiting, so at most one request is in flight and one waits.

Protocol note for the editor: ask ``GET /get_frame/<n>`` (optionally ``?width=&height=`` at
the panel's size); 200 is a JPEG; 304 answers ``If-None-Match`` with the ETag you hold; 503
carries ``Retry-After`` (seconds) and ``{"limit": ...}``, so wait that long and ask again;
400/404 are your bug, do not retry; connection errors on idle pooled sockets are safe to
retry for GET. Keep-alive: the daemon keeps idle connections 20 s (``Keep-Alive: timeout=20``).

Who may do what: send ``Host: 127.0.0.1:<port>`` (or ``localhost``/``[::1]``) and no ``Origin``
(Dart's and every HTTP library's default); anything else is refused with 421/403. Changing the
timeline (``PUT``/``DELETE /timeline``) is for the daemon's own user only: on the unix socket
nothing more is needed (the kernel tells the daemon who connected); over TCP send
``Authorization: Bearer <token>`` with the token from ``$XDG_RUNTIME_DIR/flipedit-preview/token``
(0600, new at each daemon start: read it again after a 403). ``put_timeline`` does all this.

``fetch`` is the bounded exchange previewctl uses (``PreviewClient(..., resilient=False)``: no
retries, no breaker; it reports each failure itself): a wall-clock deadline over the whole answer,
headers included (a server dripping one byte a second cannot hold the caller), a size cap (a 300 MB
answer is refused, never held), and ``Unreachable`` with a short text for a person (no exception
class names, no raw server text).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import requests
import requests_unixsocket
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from flipedit_previewd.client.transport import (
    MAX_JSON_BYTES,
    Expired,
    TimedOut,
    Unreachable,
    is_unix_address,
    socket_path,
    unix_base,
    wall_clock,
    why_failed,
)
from flipedit_previewd.common.token import read_token

DEFAULT_URL = "http://127.0.0.1:8081"


class PreviewError(Exception):
    """The daemon answered, but not with a frame."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


class CircuitOpen(Exception):
    """Failing fast: the daemon failed repeatedly and has not passed a health probe since."""


@dataclass
class Frame:
    index: int
    body: bytes
    etag: str
    cache: str
    elapsed_ms: float


def make_retry(attempts: int = 4, backoff: float = 0.1, jitter: float = 0.1, max_backoff: float = 2.0) -> Retry:
    kwargs: dict[str, Any] = dict(
        total=attempts,
        connect=attempts,
        read=attempts,
        status=attempts,
        other=0,
        allowed_methods=frozenset({"GET", "HEAD"}),
        status_forcelist=(503,),
        backoff_factor=backoff,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    try:
        return Retry(backoff_jitter=jitter, backoff_max=max_backoff, **kwargs)
    except TypeError:  # urllib3 1.26 (Debian 12): no jitter parameter
        return Retry(**kwargs)


class CircuitBreaker:
    def __init__(self, threshold: int = 5, cooldown: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.cooldown else "open"

    def success(self) -> None:
        with self._lock:
            self.failures, self.opened_at = 0, None

    def failure(self) -> None:
        with self._lock:
            self.failures += 1
            if self.failures >= self.threshold:
                self.opened_at = self.clock()


class PreviewClient:
    """``resilient=False`` (previewctl): no retries and no circuit breaker, every failure is the caller's to report;
    and ``fetch`` bounds each whole exchange with a SIGALRM wall clock (main thread only). A resilient client,
    living in someone else's program, leaves the process's timers alone: per-read timeouts and a per-chunk
    deadline check bound the body (a server dripping its headers can hold it longer).

    ``environ`` is where the TCP token is looked up (``$XDG_RUNTIME_DIR``); ``shown`` names the address for people.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float = 3.0,
        connect_timeout: float = 1.0,
        retry: Retry | None = None,
        breaker: CircuitBreaker | None = None,
        pool_size: int = 4,
        resilient: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.timeout = (connect_timeout, timeout)
        self.deadline_s = timeout
        self.breaker = breaker or CircuitBreaker()
        self.resilient = resilient
        self.environ = environ
        retries: Retry | int = (retry or make_retry()) if resilient else 0
        self.unix = is_unix_address(url)
        if self.unix:
            self.path = socket_path(url)
            self.base, self.shown = unix_base(self.path), f"unix:{self.path}"
            self.session: requests.Session = requests_unixsocket.Session()
            adapter: HTTPAdapter = requests_unixsocket.UnixAdapter(
                max_retries=retries, pool_connections=pool_size, pool_maxsize=pool_size
            )
            self.session.mount("http+unix://", adapter)
        else:
            self.path = ""
            self.base = self.shown = url.rstrip("/")
            self.session = requests.Session()
            adapter = HTTPAdapter(max_retries=retries, pool_connections=pool_size, pool_maxsize=pool_size)
            self.session.mount("http://", adapter)

    def close(self) -> None:
        self.session.close()

    def fetch(
        self,
        method: str,
        path: str,
        *,
        max_bytes: int = MAX_JSON_BYTES,
        deadline_s: float | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> requests.Response:
        """One bounded exchange: the whole answer within ``deadline_s`` (default: the client's timeout) and at
        most ``max_bytes``, or ``Unreachable``. PUT/POST/DELETE over TCP carry the daemon's token."""
        seconds = min(deadline_s, self.deadline_s) if deadline_s else self.deadline_s
        headers = {**(headers or {}), **(self._auth() if method in ("PUT", "POST", "DELETE") else {})}
        give_up = time.monotonic() + seconds
        try:
            with wall_clock(seconds + 0.2) if not self.resilient else nullcontext():
                response = self.session.request(
                    method,
                    self.base + path,
                    data=body,
                    headers=headers,
                    stream=True,
                    timeout=(min(self.timeout[0], seconds), seconds),
                )
                try:
                    declared = int(response.headers.get("Content-Length") or 0)
                except ValueError:
                    declared = 0
                if declared > max_bytes:
                    response.close()
                    raise Unreachable(f"{self.shown}: answer of {declared} bytes is over the {max_bytes} byte limit")
                content = bytearray()
                for chunk in response.iter_content(65536):
                    content += chunk
                    if len(content) > max_bytes:
                        response.close()
                        raise Unreachable(f"{self.shown}: answer over the {max_bytes} byte limit")
                    if time.monotonic() > give_up:
                        response.close()
                        raise Expired()
                response._content = bytes(content)
                setattr(response, "_content_consumed", True)  # noqa: B010 - requests' own flag, not typed
                return response
        except Expired:
            raise TimedOut(f"{self.shown}: no complete answer within {seconds:g} s") from None
        except requests.Timeout as exc:
            raise TimedOut(f"{self.shown}: {why_failed(exc, seconds)}") from None
        except requests.RequestException as exc:
            raise Unreachable(f"{self.shown}: {why_failed(exc, seconds)}") from None

    def _auth(self) -> dict[str, str]:
        """Over TCP, the daemon's token (a fresh read: the daemon writes a new one at each start); never on GETs."""
        if self.unix:
            return {}
        token = read_token(dict(os.environ if self.environ is None else self.environ))
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _get(self, path: str, headers: dict[str, str] | None = None) -> requests.Response:
        if self.resilient and self.breaker.state == "open":
            raise CircuitOpen(f"{self.base}: {self.breaker.failures} failures in a row; waiting before probing /health")
        if self.resilient and self.breaker.state == "half-open":
            self._probe()
        try:
            response = self.session.get(self.base + path, headers=headers, timeout=self.timeout)
        except requests.RequestException:
            self.breaker.failure()
            raise
        if response.status_code >= 500:
            self.breaker.failure()
        else:
            self.breaker.success()
        return response

    def _probe(self) -> None:
        try:
            ok = self.session.get(self.base + "/health", timeout=self.timeout).status_code == 200
        except requests.RequestException:
            ok = False
        if not ok:
            self.breaker.opened_at = self.breaker.clock()
            raise CircuitOpen(f"{self.base}: /health probe failed; still open")
        self.breaker.success()

    def frame(
        self, index: int, *, width: int | None = None, height: int | None = None, etag: str | None = None
    ) -> Frame | None:
        """The frame, or None when ``etag`` still matches (304). Raises ``PreviewError`` otherwise."""
        query = "&".join(f"{k}={v}" for k, v in (("width", width), ("height", height)) if v)
        started = time.perf_counter()
        response = self._get(
            f"/get_frame/{index}" + (f"?{query}" if query else ""), {"If-None-Match": etag} if etag else None
        )
        if response.status_code == 304:
            return None
        if response.status_code != 200:
            raise PreviewError(response.status_code, response.text[:200])
        return Frame(
            index,
            response.content,
            response.headers.get("ETag", ""),
            response.headers.get("X-Cache", ""),
            (time.perf_counter() - started) * 1000,
        )

    def health(self) -> dict[str, Any]:
        return dict(self._get("/health").json())

    def _change(self, method: str, body: bytes | None = None) -> dict[str, Any]:
        response = self.fetch(method, "/timeline", body=body, headers={"Content-Type": "application/json"})
        if response.status_code != 200:
            raise PreviewError(response.status_code, response.text[:200])
        return dict(response.json())

    def put_timeline(self, timeline: dict[str, Any]) -> dict[str, Any]:
        """Show this JSON timeline instead of the project database (the daemon's own user only)."""
        return self._change("PUT", json.dumps(timeline).encode())

    def delete_timeline(self) -> dict[str, Any]:
        """Back to the project database."""
        return self._change("DELETE")


class LatestFrame:
    """Latest wins: at most one request in flight and one waiting; a new submission replaces the waiting one."""

    def __init__(
        self,
        client: PreviewClient,
        on_frame: Callable[[Frame], None],
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.client = client
        self.on_frame = on_frame
        self.on_error = on_error or (lambda exc: None)
        self._lock = threading.Lock()
        self._waiting: tuple[int, dict[str, Any]] | None = None
        self._busy = False
        self._idle = threading.Event()
        self._idle.set()
        self.sent = 0
        self.replaced = 0

    def submit(self, index: int, **options: Any) -> None:
        with self._lock:
            if self._busy:
                if self._waiting is not None:
                    self.replaced += 1
                self._waiting = (index, options)
                return
            self._busy = True
            self._idle.clear()
        threading.Thread(target=self._run, args=(index, options), daemon=True).start()

    def _run(self, index: int, options: dict[str, Any]) -> None:
        while True:
            self.sent += 1
            try:
                frame = self.client.frame(index, **options)
                if frame is not None:
                    self.on_frame(frame)
            except Exception as exc:  # noqa: BLE001 - reported to the caller's callback
                self.on_error(exc)
            with self._lock:
                if self._waiting is None:
                    self._busy = False
                    self._idle.set()
                    return
                index, options = self._waiting
                self._waiting = None

    def wait(self, timeout: float | None = None) -> bool:
        return self._idle.wait(timeout)
