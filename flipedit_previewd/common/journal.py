"""Structured events to journald, with a readable copy on stderr.

Every event kind has a stable ``MESSAGE_ID`` so ``previewctl``, ``journalctl
MESSAGE_ID=...`` and the message catalog can find it. Field names are
UPPERCASE because python-systemd silently drops lowercase ones. When stderr is
itself connected to the journal (``JOURNAL_STREAM``) the stderr copy is
skipped, so nothing is logged twice.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections import deque
from typing import Any

from flipedit_previewd.common.textsafe import escape

try:
    from systemd import journal as _journal
except ImportError:  # pragma: no cover - systemd-python is a hard dependency; kept for --help on odd hosts
    _journal = None

SYSLOG_IDENTIFIER = "flipedit-previewd"

# Stable identifiers; the catalog (systemd/flipedit-previewd.catalog) explains each.
MESSAGE_IDS: dict[str, str] = {
    "start": "c11d372fca85417d984c7073fc1ca0f1",
    "ready": "d76044b1006d48c8ad4ae0babfba5ea3",
    "reload": "1bb0664868ae4b02a90d5b6b3a8d05d2",
    "stopping": "87ebb2931074468f801a5453142ae2c0",
    "stopped": "b1a8ef332a7a45ab9115a7c3299b869b",
    "fdstore_unavailable": "a6cef41aaa334f5b95834cb563a6e260",
    "request": "8d84a69d80a4429f80e9c3d90e799d59",
    "summary": "dcc33116bcfe496eb88cd6a630cf7563",
    "worker_hung": "d0b0097c0b4e4c7aba41affe589b40cf",
    "worker_replaced": "6c831ec5fac7472cb8fb550b1ad40c9e",
    "overload_began": "0d4bba927ad248f9a1071be754c92afe",
    "overload_ended": "95e025f7cab448e798af63bb450c798f",
    "watchdog_withheld": "75f311a20870423c86557a9dcf5212d7",
    "project": "b761fda0476c4b98bf0f43663277c081",
    "project_switched": "5a3c0e8d9f1b4e67a2d4c6b8e0f21a97",
    "media_problem": "8cd546bf864548fab5e572329386d1d0",
    "protocol_error": "86fc901075854c409382b72167f48f0c",
    "config_error": "972fb46f615d41a8afc229238f76c818",
    "rejections": "34dc77d4d2624af6becf3b15088ab754",
    "loop_lag": "34a798d2959141e5bd0c7b3603237c03",
    "render_budget": "88032b118e34449293ccd6407f67bbd9",
    "worker_died": "4860e0a013a84287b4356eb56680af38",
    "journal_dropped": "9cf81f39c30140b79b0ebe8fe3d7991c",
    "access_denied": "5b0e6b7f3c0d4f1f9a57a3d1e2c8b640",
    "media_roots": "e3f1a26c9d2b4b7e8c4f0a9d6b1e2f37",
    "sandbox": "917847e607594866bf534e51bd099ea6",
    "sandbox_violation": "ab47b29cea35444cb7758b1e83330ae5",
    "worker_bad_reply": "ca042e12c242429da5cb3328485c6a05",
    "proxy_started": "c9a61f44227840789837d5cbedba4735",
    "proxy_done": "2d5fa9602c714c448181ddd255e6561e",
    "proxy_failed": "d97deb8016e745af9b2a7ce72a28645b",
    "proxy_evicted": "396073ddf24542fd869fd7e46d801710",
    "proxy_cleaned": "144753a9a9774ab199e89a2c36e354c1",
    "proxy_project": "0286bb8b5e0646b1813ce587fc921bf9",
}

# Entries wait here for the writer thread: the event loop never blocks on journald. When journald
# is slower than this, entries are dropped and counted (one journal_dropped entry says how many).
JOURNAL_QUEUE = 4096
RECENT_EVENTS = 50  # kept in memory for the viewer page (GET /debug/events)

PRIORITY = {"debug": 7, "info": 6, "notice": 5, "warning": 4, "err": 3}


def _stderr_is_journal() -> bool:
    stream = os.environ.get("JOURNAL_STREAM", "")
    if not stream:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


class EventLog:
    def __init__(self, to_journal: bool = True, to_stderr: bool | None = None) -> None:
        self.to_journal = to_journal and _journal is not None
        self.to_stderr = (not _stderr_is_journal()) if to_stderr is None else to_stderr
        self._lock = threading.Lock()
        self.dropped = 0
        self._drop_lock = threading.Lock()  # not _lock: the writer holds that while stderr is slow
        self._queue: queue.Queue[tuple[str, str, str, dict[str, str], tuple[str, int, str]] | None] | None = None
        self._thread: threading.Thread | None = None
        # The last events, for the viewer page (/debug/events): already escaped, bounded.
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)

    def start_writer(self) -> None:
        """From now on ``emit`` only enqueues; a thread writes (journald or a full pipe never stalls the caller)."""
        if self._thread is not None:
            return
        self._queue = queue.Queue(JOURNAL_QUEUE)
        self._thread = threading.Thread(target=self._write_loop, name="journal", daemon=True)
        self._thread.start()

    def stop_writer(self, timeout: float = 2.0) -> None:
        """Flush what is queued, then write synchronously again."""
        q, thread = self._queue, self._thread
        if q is None or thread is None:
            return
        self._queue = None
        try:
            q.put(None, timeout=timeout)
        except queue.Full:
            pass
        thread.join(timeout)
        self._thread = None

    def _write_loop(self) -> None:
        q = self._queue
        assert q is not None
        while True:
            item = q.get()
            if item is not None:
                self._write(*item)
            if self.dropped and (item is None or q.empty()):
                with self._drop_lock:
                    dropped, self.dropped = self.dropped, 0
                self._write(
                    "journal_dropped",
                    f"{dropped} journal entries dropped: the journal writer fell behind",
                    "warning",
                    {"DROPPED": str(dropped)},
                )
            if item is None:
                return

    def emit(self, event: str, message: str, priority: str = "info", **fields: Any) -> None:
        payload = {key.upper(): _text(value) for key, value in fields.items() if value is not None}
        # MESSAGE and the stderr line are for eyes and line-based tools: client- and file-controlled text
        # in them is escaped onto one bounded line; the structured fields keep the raw value.
        message = escape(message, 2000)
        self.recent.append(
            {"time": round(time.time(), 3), "event": event, "priority": priority, "message": message[:300]}
        )
        caller = sys._getframe(1)  # the code location, taken here: the write may happen on the writer thread
        code = (caller.f_code.co_filename, int(caller.f_lineno or 0), caller.f_code.co_name)
        q = self._queue
        if q is not None:
            try:
                q.put_nowait((event, message, priority, payload, code))
            except queue.Full:
                with self._drop_lock:
                    self.dropped += 1
            return
        self._write(event, message, priority, payload, code)

    def _write(
        self, event: str, message: str, priority: str, payload: dict[str, str], code: tuple[str, int, str] = ("", 0, "")
    ) -> None:
        if self.to_journal and _journal is not None:
            # CODE_* given: python-systemd would otherwise run traceback.extract_stack (reading source
            # lines) for every entry, a tenth of the event loop's time under overload (bench/results/RESULTS.md).
            try:
                _journal.send(
                    message,
                    MESSAGE_ID=MESSAGE_IDS[event],
                    PRIORITY=str(PRIORITY[priority]),
                    SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER,
                    EVENT=event,
                    CODE_FILE=code[0],
                    CODE_LINE=code[1],
                    CODE_FUNC=code[2],
                    **payload,
                )
            except OSError:
                pass  # journald gone (shutdown): stderr still carries the line
        if self.to_stderr:
            extras = " ".join(f"{k}={escape(v, 300)}" for k, v in payload.items())
            line = f"{time.strftime('%H:%M:%S')} {priority.upper():7} {event}: {message}" + (
                f" [{extras}]" if extras else ""
            )
            with self._lock:
                try:
                    print(line, file=sys.stderr, flush=True)
                except (OSError, ValueError):
                    pass


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
