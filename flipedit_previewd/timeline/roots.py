"""Where media may be read from: the configured roots, or the project's own directories.

Never /, a system directory or the home directory itself (``safety.effective_roots``). The answer
is cached per project state, because working it out reads the project database (its asset
directories); a candidate that would make a forbidden root is skipped and logged once. A configured
root that does not exist is kept (a drive mounted later makes it work) but warned about once, by
name: a typo in allowed_roots otherwise only shows as every clip refused.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from flipedit_previewd.common.journal import EventLog
from flipedit_previewd.timeline.projectdb import ProjectSource, asset_dirs
from flipedit_previewd.timeline.safety import derived_root_problem, effective_roots


class MediaRoots:
    def __init__(self, log: EventLog) -> None:
        self.log = log
        self._key: tuple[object, ...] | None = None
        self.last_kept: list[str] | None = None  # for /health: None until first worked out
        self.last_skipped: list[tuple[str, str]] = []
        self.last_missing: list[str] = []  # configured roots that are not an existing directory (for /health)
        self._reported: set[tuple[str, str]] = set()

    def forget(self) -> None:
        self._key, self.last_kept = None, None

    def allowed(self, configured: Sequence[str], source: ProjectSource) -> list[str]:
        key = (tuple(configured), source.path, source.last.revision if source.path else "")
        if self.last_kept is not None and self._key == key:
            return self.last_kept
        kept = self.work_out(configured, source.path, source.asset_dirs)  # the assets read with the timeline, if
        self._key = key
        return kept

    def work_out(self, configured: Sequence[str], path: str, known: list[str] | None) -> list[str]:
        """The roots of the project at ``path`` (none: no project), uncached: the configured ones, else its
        folder and its assets' (``known``: read with its timeline; None: read them now)."""
        missing: list[str] = []
        if configured:
            candidates = [os.path.expanduser(p) for p in configured]
            missing = [p for p in candidates if os.path.isabs(p) and not os.path.isdir(p)]
        else:
            candidates = []
            if path:
                candidates.append(os.path.dirname(os.path.abspath(path)))
                candidates += known if known is not None else asset_dirs(path)
        kept, skipped = effective_roots(candidates)
        if not configured:  # the project's own suggestions: stricter than what the user configured
            for root in list(kept):
                why = derived_root_problem(root)
                if why:
                    kept.remove(root)
                    skipped.append((root, why))
        for root, why in skipped:
            if ("skipped", root) not in self._reported:
                self._reported.add(("skipped", root))
                self.log.emit("media_roots", f"not a media root: {root} ({why})", "warning", ROOT=root, REASON=why)
        for root in missing:
            if ("missing", root) not in self._reported:
                self._reported.add(("missing", root))
                self.log.emit(
                    "media_roots",
                    f"configured media root does not exist: {root} (kept; media under it is refused until it does)",
                    "warning",
                    ROOT=root,
                    REASON="does not exist",
                )
        self.last_kept, self.last_skipped, self.last_missing = kept, skipped, missing
        return kept
