"""The path policy: which directories may be media roots, and whether a timeline's paths lie under them.

``roots.py`` works out the roots of the project served by these rules. A JSON timeline comes over
HTTP, so its paths are untrusted: each must resolve (symlinks and ``..`` included) to a file under
an allowed root, or the whole timeline is refused (``PathRefused``, answered 403) before anything is opened. That early
check is a
courtesy; the binding one is made by the worker on the descriptor it opened
(``media.open_media``), so a symlink swapped afterwards gains nothing.

A root is never ``/``, a system directory or a home directory itself: the
default roots are the directories of the project's assets, and an asset stored
at ``/x.mp4`` or ``~/x.mp4`` must not open the whole disk or the whole home.
"""

from __future__ import annotations

import os

from flipedit_previewd.common.errors import PathRefused
from flipedit_previewd.timeline.model import Timeline

SYSTEM_DIRS = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/home",
    "/media",
    "/mnt",
    "/opt",
    "/snap",
)
UNDER_SYSTEM = ("/boot", "/dev", "/etc", "/proc", "/sys", "/usr/bin", "/usr/sbin", "/usr/lib", "/var/log")


def _home() -> str:
    return os.path.realpath(os.path.expanduser("~"))


def root_problem(root: str, home: str | None = None) -> str:
    """Why ``root`` (already real) may not be a media root, or "" if it may."""
    home = home or _home()
    if root == "/":
        return "the root directory"
    if root in SYSTEM_DIRS or any(root.startswith(d + "/") for d in UNDER_SYSTEM):
        return "a system directory"
    if root == home or (home.startswith(root + "/") and root != "/"):
        return "the home directory or above it"
    return ""


def effective_roots(candidates: list[str], home: str | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """(roots kept, [(candidate, why skipped)]), each kept root a real path, no duplicates."""
    kept: list[str] = []
    skipped: list[tuple[str, str]] = []
    for candidate in candidates:
        if not candidate or not os.path.isabs(candidate):
            skipped.append((candidate, "not an absolute path"))
            continue
        try:
            real = os.path.realpath(candidate)
        except (ValueError, OSError) as exc:  # a NUL byte, a name too long: not a directory anyone can have
            skipped.append((candidate[:200], f"not a usable path ({type(exc).__name__})"))
            continue
        why = root_problem(real, home)
        if why:
            skipped.append((candidate, why))
        elif real not in kept:
            kept.append(real)
    return kept, skipped


DOT_SCAN_LIMIT = 4096  # entries looked at for a dot-directory: a project folder's top level is smaller


def derived_root_problem(real: str, runtime_dir: str | None = None) -> str:
    """Why a root the *project* suggests (not one the user configured) must not be one: the project
    may come from someone else, and every local user may read frames from under a root.

    A directory holding dot-directories (``.ssh``, ``.config``, ``.git``) is a home or a
    configuration folder, not a folder of media; the runtime directory holds the daemon's token.
    """
    runtime = os.path.realpath(runtime_dir or os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}")
    if real == runtime or runtime.startswith(real.rstrip(os.sep) + os.sep) or real.startswith(runtime + os.sep):
        return "the runtime directory or one holding it"
    try:
        with os.scandir(real) as entries:
            for count, entry in enumerate(entries):
                if count >= DOT_SCAN_LIMIT:
                    break
                if entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
                    return f"holds dot-directories ({entry.name[:40]}): a home or configuration folder, not a project's"
    except OSError:
        return ""  # not listable: nothing under it is readable either; the open of each file decides
    return ""


def is_under(path: str, roots: list[str] | tuple[str, ...]) -> bool:
    real = os.path.realpath(path)
    for root in roots:
        real_root = os.path.realpath(root)
        if real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep):
            return True
    return False


def check_timeline_paths(timeline: Timeline, roots: list[str]) -> None:
    for index, clip in enumerate(timeline.clips):
        if not os.path.isabs(clip.source_path) or not is_under(clip.source_path, roots):
            raise PathRefused(
                f"clip {index}: source_path {clip.source_path[:200]!r} is outside the allowed roots",
                field=f"clips[{index}].source_path",
            )
