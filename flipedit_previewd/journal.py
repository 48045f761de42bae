"""Structured events to journald, with a readable copy on stderr.

Every event kind has a stable ``MESSAGE_ID`` so ``previewctl``, ``journalctl
MESSAGE_ID=...`` and the message catalog can find it. Field names are
UPPERCASE because python-systemd silently drops lowercase ones. When stderr is
itself connected to the journal (``JOURNAL_STREAM``) the stderr copy is
skipped, so nothing is logged twice.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

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
}

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
        self.counts: dict[str, int] = {}

    def emit(self, event: str, message: str, priority: str = "info", **fields: Any) -> None:
        self.counts[event] = self.counts.get(event, 0) + 1
        payload = {key.upper(): _text(value) for key, value in fields.items() if value is not None}
        if self.to_journal and _journal is not None:
            # CODE_* given: python-systemd would otherwise run traceback.extract_stack (reading source
            # lines) for every entry, a tenth of the event loop's time under overload (bench/RESULTS.md).
            caller = sys._getframe(1)
            try:
                _journal.send(message, MESSAGE_ID=MESSAGE_IDS[event], PRIORITY=str(PRIORITY[priority]),
                              SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER, EVENT=event, CODE_FILE=caller.f_code.co_filename,
                              CODE_LINE=caller.f_lineno, CODE_FUNC=caller.f_code.co_name, **payload)
            except OSError:
                pass  # journald gone (shutdown): stderr still carries the line
        if self.to_stderr:
            extras = " ".join(f"{k}={v}" for k, v in payload.items())
            line = f"{time.strftime('%H:%M:%S')} {priority.upper():7} {event}: {message}" + (f" [{extras}]" if extras else "")
            with self._lock:
                try:
                    print(line, file=sys.stderr, flush=True)
                except (OSError, ValueError):
                    pass


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
