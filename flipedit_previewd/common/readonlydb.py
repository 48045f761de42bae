"""Opening an editor's database read-only, as untrusted input: the daemon's reader and previewctl doctor.

A leaf (standard library only) so that previewctl can use the daemon's own opener without
importing the render side (ARCHITECTURE.md, the layering rule).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import quote

T = TypeVar("T")

BUSY_TIMEOUT_MS = 200
PROGRESS_STEPS = 10_000  # SQLite VM instructions between deadline checks
# The files SQLite opens beside a database before reading it (measured with strace on 3.40: it stat()s
# ``<db>-journal`` and, when it exists, open()s it without O_NONBLOCK to look for a hot journal; -wal and -shm
# in WAL mode). Named after the database's real path: SQLite resolves a symlinked database first.
SIDE_FILES = ("-journal", "-wal", "-shm")
# A read still running this long after its deadline is blocked in a system call (the progress handler only
# runs between VM instructions); its thread is left behind, and past MAX_STUCK such threads no read starts.
STUCK_GRACE = 1.0
MAX_STUCK = 4
_stuck: set[threading.Thread] = set()
_stuck_lock = threading.Lock()


class ReadStuck(sqlite3.OperationalError):
    """A read that did not finish by its deadline: blocked opening or reading one of the database's files."""


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for a message: "FIFO", "symlink", "directory"..."""
    for test, name in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"


def side_file_problem(path: str) -> str:
    """Why SQLite must not be let near ``path``: a side file that exists and is not a regular file, or "".

    A FIFO as ``-journal`` blocks SQLite's open() for ever (a shared folder or an unpacked archive is enough to
    make one). SQLite opens side files with O_NOFOLLOW, so a symlink fails rather than blocks, but it is refused
    here too: lstat, never stat, so nothing is followed to find out.
    """
    bases = dict.fromkeys((os.path.abspath(path), os.path.realpath(path)))
    for base in bases:
        for suffix in SIDE_FILES:
            side = base + suffix
            try:
                mode = os.lstat(side).st_mode
            except FileNotFoundError:
                continue
            except OSError as exc:
                return f"cannot stat {os.path.basename(side)}: {exc.strerror}"
            if not stat.S_ISREG(mode):
                return f"{os.path.basename(side)} is a {file_kind(mode)}, not a regular file (SQLite would open it)"
    return ""


def readonly_uri(path: str) -> str:
    """SQLite's read-only URI for ``path``: every byte that means something in a URI (``?``, ``#``, ``%``) quoted."""
    return f"file:{quote(os.path.abspath(path), safe='/')}?mode=ro"


def open_readonly(path: str, deadline: float | None = None) -> sqlite3.Connection:
    """Open a project database as untrusted input.

    Regular files only, the database and the side files SQLite opens beside it (opening a FIFO blocks
    forever; ``side_file_problem``), ``trusted_schema`` off (a hostile
    schema's views and triggers cannot call functions with side effects), and with a
    ``deadline`` SQLite's progress handler abandons any statement still running at it
    (a recursive view as ``clips`` would otherwise run forever).
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise sqlite3.OperationalError(f"cannot stat: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise sqlite3.DatabaseError("not a regular file")
    problem = side_file_problem(path)
    if problem:
        raise sqlite3.DatabaseError(f"refused: {problem}")
    conn = sqlite3.connect(readonly_uri(path), uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA query_only = 1")
    conn.execute("PRAGMA trusted_schema = OFF")
    if deadline is not None:
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), PROGRESS_STEPS)
    return conn


def read_readonly(path: str, timeout: float, read: Callable[[sqlite3.Connection], T]) -> T:
    """``read(conn)`` on ``path`` opened read-only, in a thread of its own that the caller waits for at most
    ``timeout`` + ``STUCK_GRACE`` seconds: then ``ReadStuck``, whatever the read is blocked in.

    The checks in ``open_readonly`` refuse the files that would block; this is for what they cannot see (a
    side file swapped for a FIFO between the check and SQLite's open). The caller, and any lock it holds, is
    free again at the deadline; the blocked thread is a daemon thread (it holds no lock and never delays the
    exit). Whatever ``read`` raises (RecursionError, MemoryError, ...) is raised to the caller.
    """
    with _stuck_lock:
        _stuck.difference_update([t for t in _stuck if not t.is_alive()])
        if len(_stuck) >= MAX_STUCK:
            raise ReadStuck(f"{len(_stuck)} earlier database reads are still blocked; not starting another")
    deadline = time.monotonic() + timeout
    outcome: list[tuple[bool, object]] = []

    def run() -> None:
        try:
            conn = open_readonly(path, deadline)
            try:
                outcome.append((True, read(conn)))
            finally:
                conn.close()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, whatever it is
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="dbread", daemon=True)
    thread.start()
    thread.join(timeout + STUCK_GRACE)
    if not outcome:
        with _stuck_lock:
            _stuck.add(thread)
        raise ReadStuck(
            f"read did not finish within {timeout + STUCK_GRACE:.1f} s: blocked opening or reading one "
            "of the database's files (a FIFO or a device?)"
        )
    ok, value = outcome[0]
    if ok:
        return value  # type: ignore[return-value]
    raise value  # type: ignore[misc]
