"""Where media may be read from: the configured roots, or the project's own directories.

Never /, a system directory or the home directory itself (``safety.effective_roots``). The answer
is cached per project state, because working it out reads the project database (its asset
directories); a candidate that would make a forbidden root is skipped and logged once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .journal import EventLog
from .projectdb import ProjectSource, asset_dirs
from .safety import effective_roots


class MediaRoots:
    def __init__(self, log: EventLog) -> None:
        self.log = log
        self._key: tuple[object, ...] | None = None
        self.last_kept: list[str] | None = None  # for /health: None until first worked out
        self.last_skipped: list[tuple[str, str]] = []
        self._reported: set[str] = set()

    def forget(self) -> None:
        self._key, self.last_kept = None, None

    def allowed(self, configured: Sequence[str], source: ProjectSource) -> list[str]:
        key = (tuple(configured), source.path, source.last.revision if source.path else "")
        if self.last_kept is not None and self._key == key:
            return self.last_kept
        if configured:
            candidates = [os.path.expanduser(p) for p in configured]
        else:
            candidates = []
            if source.path:
                candidates.append(os.path.dirname(os.path.abspath(source.path)))
                candidates += asset_dirs(source.path)
        kept, skipped = effective_roots(candidates)
        for root, why in skipped:
            if root not in self._reported:
                self._reported.add(root)
                self.log.emit("media_roots", f"not a media root: {root} ({why})", "warning", ROOT=root, REASON=why)
        self._key, self.last_kept, self.last_skipped = key, kept, skipped
        return kept
