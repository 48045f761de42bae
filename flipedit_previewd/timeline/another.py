"""A project database a request names that is not the one served (``previewctl proxies build --project``).

It is read as the served one is (``projectdb.read_project``: read-only, regular files only, the read deadline,
``max_timeline_clips``, in a thread of its own), with the served one's limits, and its media roots are worked
out by the same rules (``roots.MediaRoots``: the configured roots, else its own folder and its assets'), but
where the served project keeps its last good timeline and skips a bad row, a project read for a request is
refused with the reason, because the request can say so: the path (not absolute, not a regular file, a
symlink, a FIFO, missing), the file (not a FlipEdit database, a read past its deadline), the timeline (over a
limit, rows that break the rules) are a ``ProjectRefused`` (422), and a clip outside its roots a
``PathRefused`` (403), as a PUT timeline's is. Blocking: call it from an offload thread, never the loop.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flipedit_previewd.common.errors import DomainError, HTTPError, PathRefused, ProjectRefused
from flipedit_previewd.common.journal import EventLog
from flipedit_previewd.common.readonlydb import file_kind
from flipedit_previewd.timeline.model import Timeline
from flipedit_previewd.timeline.projectdb import describe, read_project
from flipedit_previewd.timeline.roots import MediaRoots
from flipedit_previewd.timeline.safety import check_timeline_paths

PATH_MAX = 4096  # bytes of a path, its terminating NUL included (Linux)
SKIPPED_SHOWN = 3  # rows named in the refusal


@dataclass(frozen=True)
class Another:
    """A project read for its proxies: its path, its timeline, the roots its media were checked against."""

    path: str
    timeline: Timeline
    roots: tuple[str, ...]


def check_project_path(path: object) -> str:
    """``path`` if it may be opened as a project database, else ``ProjectRefused`` saying why.

    An absolute path (the daemon's working directory is not the caller's), of valid UTF-8, no NUL byte, below
    PATH_MAX, naming a regular file itself: a symlink is refused (its folder, not its target's, would give the
    media roots) as are a FIFO (opening it would block), a directory and a device. lstat, never stat: nothing is
    followed to find out. SQLite opens the file by name afterwards; what is swapped in between is caught by the
    opener's own checks (a regular file again) and by the read's deadline.
    """
    if not isinstance(path, str) or not path:
        raise ProjectRefused("project: a path is needed", field="project")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise ProjectRefused("project: the path is not valid UTF-8", field="project") from None
    shown = repr(path[:200])
    if "\x00" in path:
        raise ProjectRefused(f"project {shown}: the path holds a NUL byte", field="project")
    if size >= PATH_MAX:
        raise ProjectRefused(f"project {shown}...: longer than PATH_MAX ({PATH_MAX} bytes)", field="project")
    if not os.path.isabs(path):
        raise ProjectRefused(f"project {shown}: not an absolute path", field="project")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise ProjectRefused(f"project {shown}: no such file", field="project") from None
    except OSError as exc:
        raise ProjectRefused(f"project {shown}: cannot stat: {exc.strerror}", field="project") from None
    if stat.S_ISLNK(mode):
        raise ProjectRefused(
            f"project {shown}: a symlink; name the project database itself (its folder gives its media roots)",
            field="project",
        )
    if not stat.S_ISREG(mode):
        raise ProjectRefused(f"project {shown}: a {file_kind(mode)}, not a regular file", field="project")
    return path


def read_another(
    path: object,
    canvas: tuple[int, int],
    fps: float,
    *,
    timeout: float,
    max_rows: int,
    check: Callable[[Timeline], None],
    configured_roots: Sequence[str],
    log: EventLog,
) -> Another:
    """The project at ``path`` read and checked (module docstring); ``check`` raises for a limit it breaks."""
    checked = check_project_path(path)
    shown = repr(checked[:200])
    skipped: list[str] = []
    try:
        timeline, assets = read_project(checked, canvas, fps, timeout, max_rows, skipped)
    except Exception as exc:  # noqa: BLE001 - whatever a hostile file makes the read raise is the request's answer
        raise ProjectRefused(f"project {shown}: cannot be read: {describe(exc)}", field="project") from None
    if skipped:
        raise ProjectRefused(
            f"project {shown}: {len(skipped)} row(s) break the rules: {'; '.join(skipped[:SKIPPED_SHOWN])}",
            field="project",
            skipped=len(skipped),
        )
    try:
        check(timeline)
    except (HTTPError, DomainError) as exc:
        raise ProjectRefused(f"project {shown}: {exc.detail}", field="project", breaks=exc.extra.get("limit")) from None
    roots = MediaRoots(log).work_out(configured_roots, checked, assets)
    try:
        check_timeline_paths(timeline, roots)
    except PathRefused as exc:
        raise PathRefused(f"project {shown}: {exc.detail}", **exc.extra) from None
    return Another(checked, timeline, tuple(roots))
