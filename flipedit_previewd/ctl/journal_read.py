"""Reading the daemon's journal entries back, whoever ran it (user unit, system unit, by hand).

Any local process can write an entry with ``SYSLOG_IDENTIFIER=flipedit-previewd`` and our
``MESSAGE_ID``s, so entries are selected by fields journald itself sets from the sender's
credentials: ``_SYSTEMD_UNIT`` (the system unit), or ``_UID`` = our own uid (our user unit, or
a daemon we started by hand). Events are recognised only by known ``MESSAGE_ID``s, numbers
are parsed defensively (nan, inf and junk are ignored and counted), and what is printed is
escaped. Time specs follow journalctl's common forms.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from flipedit_previewd.common.journal import MESSAGE_IDS, SYSLOG_IDENTIFIER
from flipedit_previewd.common.textsafe import finite_number
from systemd import journal

from .safeout import clean

EVENT_BY_ID = {v: k for k, v in MESSAGE_IDS.items()}
UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}


class BadTime(ValueError):
    pass


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """Local, timezone-aware (the journal reader's timestamps are): see ``_parse_time`` for the forms."""
    return _parse_time(text, now).astimezone()


def _parse_time(text: str, now: datetime | None = None) -> datetime:
    """``now``, ``today``, ``yesterday``, ``N unit ago``, ``-N unit``, ``+N unit``, ISO dates and times."""
    now = now or datetime.now()
    spec = text.strip().lower()
    if spec == "now":
        return now
    if spec == "today":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if spec == "yesterday":
        return now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    if spec == "tomorrow":
        return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    epoch = re.fullmatch(r"@(\d+(?:\.\d+)?)", spec)
    if epoch:  # journalctl's "@1700000000": seconds since the epoch, UTC
        stamp = datetime.fromtimestamp(float(epoch.group(1)), UTC)
        return stamp.astimezone().replace(tzinfo=None) if now.tzinfo is None else stamp
    match = re.fullmatch(r"([+-]?)\s*(\d+(?:\.\d+)?)\s*([a-z]+)(\s+ago)?", spec)
    if match and match.group(3) in UNITS:
        seconds = float(match.group(2)) * UNITS[match.group(3)]
        sign = 1 if match.group(1) == "+" and not match.group(4) else -1
        if not match.group(1) and not match.group(4):
            raise BadTime(f"'{text}': say '{text} ago' (or --since=-{text})")
        return now + timedelta(seconds=sign * seconds)
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%H:%M:%S", "%H:%M"):
        try:
            parsed = datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
        if fmt.startswith("%H"):
            parsed = now.replace(hour=parsed.hour, minute=parsed.minute, second=parsed.second, microsecond=0)
        return parsed
    raise BadTime(f"cannot understand time '{text}'; try 'YYYY-MM-DD HH:MM:SS', '1 hour ago', 'today' or '@EPOCH'")


SERVICE_UNIT = "flipedit-preview.service"
# Numbers in fields that were not numbers (nan, inf, junk): ignored, and counted here for stats.
IGNORED = {"fields": 0}


JOURNAL_DIRS = ("/var/log/journal", "/run/log/journal")


def journal_places(directory: str | None, files: list[str] | None) -> tuple[list[str], bool]:
    """Where the journal is read from, and whether any journal file is there (without opening them)."""
    if files:
        return list(files), all(os.path.isfile(f) for f in files)
    places = [directory] if directory else list(JOURNAL_DIRS)
    for place in places:
        for root, dirs, names in os.walk(place):
            if any(name.endswith((".journal", ".journal~")) for name in names):
                return places, True
            if root.count(os.sep) - place.count(os.sep) >= 1:
                dirs.clear()  # <dir>/<machine-id>/*.journal at most
    return places, False


def open_reader(directory: str | None = None, files: list[str] | None = None, uid: int | None = None) -> Any:
    """Entries of the system unit, or with our identifier sent by our own uid (user unit or by hand).

    A copied journal (``--directory``/``--file``) comes from another machine whose uids mean
    nothing here: there, the user unit's entries are taken from any uid.
    """
    if files:
        reader = journal.Reader(files=files)
    elif directory:
        reader = journal.Reader(path=directory)
    else:
        reader = journal.Reader()
    uid = os.getuid() if uid is None else uid
    reader.add_match(_SYSTEMD_UNIT=SERVICE_UNIT)
    reader.add_disjunction()
    if files or directory:
        reader.add_match(_SYSTEMD_USER_UNIT=SERVICE_UNIT)
        reader.add_disjunction()
    reader.add_match(SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER, _UID=str(uid))
    return reader


def entries(reader: Any, since: datetime | None = None, until: datetime | None = None) -> Iterator[dict[str, Any]]:
    if since is not None:
        reader.seek_realtime(since)
    for entry in reader:
        stamp = entry.get("__REALTIME_TIMESTAMP")
        if until is not None and isinstance(stamp, datetime) and stamp.astimezone() > until:
            break
        yield entry


def event_of(entry: dict[str, Any]) -> str:
    raw: Any = entry.get("MESSAGE_ID")
    key = raw.hex if isinstance(getattr(raw, "hex", None), str) else str(raw or "").replace("-", "")
    return EVENT_BY_ID.get(key, "")  # only our MESSAGE_IDs name events; an EVENT field alone is anyone's word


def number(entry: dict[str, Any], field: str) -> float | None:
    value = entry.get(field)
    if value is None:
        return None
    number = finite_number(value)
    if number is None:
        IGNORED["fields"] += 1
    return number


def as_json(entry: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if isinstance(value, datetime):
            out[key] = value.isoformat()
        elif isinstance(value, bytes):
            out[key] = value.decode(errors="replace")
        elif hasattr(value, "hex") and not isinstance(value, (int, float)):
            out[key] = value.hex if isinstance(value.hex, str) else str(value)
        elif isinstance(value, timedelta):
            out[key] = round(value.total_seconds(), 6)
        elif hasattr(value, "timestamp") and isinstance(value.timestamp, timedelta):
            out[key] = round(value.timestamp.total_seconds(), 6)  # journal.Monotonic: seconds since boot
        elif isinstance(value, (str, int, float, bool)) or value is None:
            out[key] = value
        else:
            out[key] = str(value)
    out["EVENT"] = event_of(entry)
    return out


def short_line(entry: dict[str, Any]) -> str:
    stamp = entry.get("__REALTIME_TIMESTAMP")
    when = stamp.strftime("%b %d %H:%M:%S.%f")[:-3] if isinstance(stamp, datetime) else "?"
    unit = entry.get("_SYSTEMD_USER_UNIT") or entry.get("_SYSTEMD_UNIT") or "by hand"
    event = event_of(entry) or "-"
    message = entry.get("MESSAGE", "")
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    message = str(message)
    if message.startswith(f"{event}: "):  # entries of older versions repeated the event in the message
        message = message[len(event) + 2 :]
    return f"{when} {clean(unit, 80)}[{clean(entry.get('_PID', '?'), 12)}] {event}: {clean(message, 2000)}"
