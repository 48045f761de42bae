"""The project served: its source (replaced when the editor opens another), the list it follows, its media roots.

``Project`` is the project source the other parts are handed (the routes, the frame use-case, the
supervisor, /health, the dispatcher's threads): none of them holds a ``ProjectSource`` of its own,
because a switch of project replaces it. Reads of a database never run on the event loop: they go
to the offload threads (``timeline``), or to a dispatcher thread (``current``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from flipedit_previewd.app.state import RunningConfig
from flipedit_previewd.common.journal import EventLog
from flipedit_previewd.common.metrics import Metrics
from flipedit_previewd.common.offload import BoundedOffload
from flipedit_previewd.config.schema import Config
from flipedit_previewd.timeline.another import Another, read_another
from flipedit_previewd.timeline.cost import check_timeline
from flipedit_previewd.timeline.following import ProjectFollower, Switch
from flipedit_previewd.timeline.model import Timeline
from flipedit_previewd.timeline.projectdb import ProjectSource
from flipedit_previewd.timeline.roots import MediaRoots


class Project:
    def __init__(
        self,
        running: RunningConfig,
        path: str,
        follower: ProjectFollower | None,
        log: EventLog,
        metrics: Metrics,
        offload: BoundedOffload,
    ) -> None:
        """``path``: the project chosen at start (``--project``, the demo's, or the follower's first choice);
        ``follower``: the editor's project list, followed unless --project pins one."""
        config = running.config
        self.running = running
        self.log = log
        self.metrics = metrics
        self.offload = offload
        self.follower = follower
        self.reason = project_reason(config, path)
        self.source = ProjectSource(
            os.path.expanduser(path) if path else "",
            (config.canvas_width, config.canvas_height),
            config.frame_rate,
            no_project_text(config),
        )
        self.roots = MediaRoots(log)
        self._follow_task: asyncio.Future[None] | None = None
        self.apply(config)

    def apply(self, config: Config) -> None:
        """The live settings the source holds (db_read_timeout, max_timeline_clips): at start, on reload, on a "
        "switch."""
        self.source.read_timeout = config.db_read_timeout
        self.source.max_rows = config.max_timeline_clips
        self.source.check = self.check_limits

    def check_limits(self, timeline: Timeline) -> None:
        config = self.running.config
        check_timeline(timeline, config.max_layer_pixels, config.max_timeline_clips)

    def current(self) -> Timeline:
        """The timeline now, read from the database if it changed (blocks: a dispatcher or offload thread only)."""
        return self.source.current()

    async def timeline(self) -> Timeline:
        """The current timeline without blocking the event loop: a changed database is read in a thread."""
        timeline = await self.timeline_unless_changed()
        if timeline is None:
            timeline = await self.offload.run(self.source.current, False)
        return timeline

    async def timeline_unless_changed(self) -> Timeline | None:
        """As ``timeline``, but None when the database changed since its last read: a caller about to render
        lets the render read it (dispatch.py reads the timeline when a render starts), which saves the trip
        through an offload thread and back to the loop on the way (the drag's settle, bench/results/RESULTS.md)."""
        await self.follow()
        timeline, why = self.source.peek()
        if timeline is None and why != "database":
            timeline = await self.offload.run(self.source.current, False)
        return timeline

    def publish_events(self) -> None:
        """On the loop, after a read: what the source noticed (read, locked, refused) goes to the journal."""
        source = self.source
        for state, message in source.drain_events():
            if state == "ok":
                self.metrics.timeline_reads.inc()
            self.log.emit(
                "project",
                message,
                "info" if state == "ok" else "warning",
                PROJECT=source.path,
                PROJECT_STATE=state,
                TIMELINE_READS=source.health.reads,
            )

    def reread(self) -> None:
        """On reload: the project list and the timeline read again (off the loop), the media roots worked out anew."""
        if self.follower is not None:  # the next follow re-reads the project list
            self.follower.forget()

        def reread() -> None:
            self.source.current(force=True)
            self.publish_events()

        # Off the loop: a locked or hostile database must not hold the loop (or SIGHUP would stall it).
        self.offload.submit_nowait(reread)
        self.roots.forget()

    def retry_unreadable(self) -> None:
        """From the tick: a locked or unreadable database is tried again now and then even with no requests, so
        /health says "ok" again once the writer is done (the read itself respects its retry delay)."""
        if self.source.health.state in ("ok", "none") or self.source.override:
            return

        def retry() -> None:
            self.source.current()
            self.publish_events()

        self.offload.submit_nowait(retry)

    async def follow(self) -> None:
        """Switch to the newest project in the editor's list when it changed (a stat; a read only on change)."""
        if self.follower is None or not self.follower.due(self.source.path):
            return
        switch = await self.offload.run(self.follower.choose, self.source.path)
        self._switch_to(switch)

    def follow_in_background(self) -> None:
        """From the tick: follow the project list with no requests coming (one follow at a time)."""
        if self.follower is not None and self._follow_task is None:
            self._follow_task = asyncio.ensure_future(self.follow())
            self._follow_task.add_done_callback(self._followed)

    def _followed(self, task: asyncio.Future[None]) -> None:
        self._follow_task = None
        if not task.cancelled() and task.exception() is not None:
            self.log.emit("protocol_error", f"following the project list failed: {task.exception()!r}", "err")

    def _switch_to(self, switch: Switch | None) -> None:
        if switch is None or self.follower is None or switch.project == self.source.path:
            return
        config = self.running.config
        source = ProjectSource(
            switch.project, (config.canvas_width, config.canvas_height), config.frame_rate, no_project_text(config)
        )
        source.set_json(self.source.override)  # a PUT /timeline stays until DELETE
        self.source = source
        self.apply(config)
        self.log.emit(
            "project_switched",
            f"now serving {switch.project or 'no project'} ({switch.reason}); was {switch.previous or 'none'}",
            "notice",
            PROJECT=switch.project,
            PREVIOUS_PROJECT=switch.previous,
            REASON=switch.reason,
            METADATA_DB=self.follower.metadata_db,
            SWITCHES=self.follower.switches,
        )

    def read_another(self, path: object) -> Another:
        """Another project's database (``proxies build --project``), read and checked with this one's settings
        (canvas, rate, read deadline, limits, the configured roots): blocks, an offload thread only."""
        config = self.running.config
        return read_another(
            path,
            (config.canvas_width, config.canvas_height),
            config.frame_rate,
            timeout=config.db_read_timeout,
            max_rows=config.max_timeline_clips,
            check=self.check_limits,
            configured_roots=config.allowed_roots,
            log=self.log,
        )

    def allowed_roots(self, timeline: Timeline | None = None) -> list[str]:
        """Where media may be read from (roots.py); cached per project state."""
        return self.roots.allowed(self.running.config.allowed_roots, self.source)

    def health(self) -> dict[str, Any]:
        """/health's "project" entry: never a database read (/health must answer at once)."""
        source, timeline = self.source, self.source.last
        return {
            "path": source.path,
            "state": source.health.state,
            "error": source.health.error,
            "reads": source.health.reads,
            "revision": timeline.revision,
            "source": timeline.source,
            "clips": len(timeline.clips),
            "following": self.follower.state() if self.follower else None,
        }


def project_reason(config: Config, project: str) -> str:
    """Why this project (or none) is served, for the start and ready messages of a bare start."""
    if config.project:
        return "from --project / the configuration"
    if config.demo:
        return "the built-in demo project (--demo)"
    metadata = os.path.expanduser(config.metadata_db)
    if project:
        return f"the most recently modified project in {metadata}"
    if not os.path.exists(metadata):
        return f"no --project, no --demo, and the editor's project list {metadata} does not exist"
    return f"no --project, no --demo, and no usable project in {metadata}"


def no_project_text(config: Config) -> str:
    """What an empty frame, /health and doctor say when no project is served: where it was looked for, and the fix."""
    return (
        f"No project: none is open in FlipEdit (looked in {config.metadata_db}). "
        "Open a project in FlipEdit, or pass --project FILE."
    )
