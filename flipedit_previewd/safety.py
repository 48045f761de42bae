"""Where media may be read from.

A JSON timeline comes over HTTP, so its paths are untrusted: each must resolve
(symlinks and ``..`` included) to a file under an allowed root, or the whole
timeline is refused with 403 before anything is opened.
"""

from __future__ import annotations

import os

from .errors import Forbidden
from .timeline import Timeline


def is_under(path: str, roots: list[str]) -> bool:
    real = os.path.realpath(path)
    for root in roots:
        real_root = os.path.realpath(root)
        if real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep):
            return True
    return False


def check_timeline_paths(timeline: Timeline, roots: list[str]) -> None:
    for index, clip in enumerate(timeline.clips):
        if not os.path.isabs(clip.source_path) or not is_under(clip.source_path, roots):
            raise Forbidden(f"clip {index}: source_path {clip.source_path[:200]!r} is outside the allowed roots",
                            field=f"clips[{index}].source_path")
