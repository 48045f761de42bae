"""Supervision: the health tick, the hang policy and the status text.

``Supervisor`` runs on the event loop once per tick and reads both sides of the daemon, handed to it
as parts (admission and the dispatcher's snapshot of it, the worker pool, the project, the request
stats): deadlines, the end of an overload, a locked database retried, the project list followed,
hung workers reported and replaced. It also says what the daemon's state is, in one word
(``status``) and in one line (``STATUS=``).

The heartbeat that asks for this tick is ``sd.watchdog.Watchdog``, a thread of its own.

"Hung" has one definition, ``WorkerPool.hung_workers`` (rendering one frame past hang_threshold).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from flipedit_previewd.app.project import Project
from flipedit_previewd.app.state import RequestStats, RunningConfig
from flipedit_previewd.common.journal import EventLog
from flipedit_previewd.common.looplag import LoopLag
from flipedit_previewd.http.lifecycle import LifecycleState
from flipedit_previewd.proxy.manager import ProxyManager
from flipedit_previewd.render.admission import Admission
from flipedit_previewd.render.dispatch import QueueSnapshot
from flipedit_previewd.render.pool import WorkerPool
from flipedit_previewd.render.renderahead import RenderAhead

if TYPE_CHECKING:
    from flipedit_previewd.render.pool import Worker


class Supervisor:
    """The tick, the hang policy and the status text; on the event loop, over the parts it is handed."""

    def __init__(
        self,
        *,
        running: RunningConfig,
        lifecycle: LifecycleState,
        admission: Admission,
        snapshot: Callable[[], QueueSnapshot],
        pool: WorkerPool,
        ahead: RenderAhead,
        project: Project,
        stats: RequestStats,
        lag: LoopLag,
        log: EventLog,
        proxies: ProxyManager | None = None,
    ) -> None:
        self.running = running
        self.lifecycle = lifecycle
        self.admission = admission  # the tick expires its overdue jobs and drops render-ahead ones
        self.snapshot = snapshot  # everything else about the queue is read from the dispatcher's snapshot
        self.pool = pool
        self.ahead = ahead
        self.project = project
        self.stats = stats
        self.lag = lag
        self.log = log
        self.proxies = proxies  # told the timeline at each tick: its new videos get proxies (proxy/manager.py)

    def tick(self) -> None:
        """Once per health tick on the loop: deadlines, overload end, hung workers, summaries."""
        self.admission.expire_overdue()
        if not self.ahead.active(time.monotonic()):
            self.admission.retain_ahead(lambda p: False)  # the playback or scrub stopped
        self.project.retry_unreadable()
        self.project.follow_in_background()  # notice a switch of project with no requests too
        if self.proxies is not None:
            self.proxies.note(self.project.source.last)  # cheap when the revision is the one already seen
        self.stats.end_overload(self.admission.rejected_recently(5))
        self.replace_hung()

    def replace_hung(self) -> None:
        """Report each hung worker once, replace those ``hang_policy`` says (see there)."""
        pool, log = self.pool, self.log
        now = time.monotonic()
        report, replace = hang_policy(pool.hung_workers(now), len(pool.workers), now, pool.hang_threshold)
        for worker in report:
            worker.hung_reported = True
            log.emit(
                "worker_hung",
                f"worker {worker.index} stuck on frame {worker.frame} for {now - worker.since:.1f} s",
                "err",
                WORKER=worker.index,
                WORKER_PID=worker.process.pid,
                FRAME=worker.frame,
            )
        for worker in replace:
            log.emit(
                "worker_replaced",
                f"worker {worker.index} replaced after hanging on frame {worker.frame}",
                "warning",
                WORKER=worker.index,
                WORKER_PID=worker.process.pid,
                FRAME=worker.frame,
            )
            pool.replace_hung(worker, worker.job_id)

    def can_progress(self) -> bool:
        """The pool can make progress unless every worker is stuck past the hang threshold."""
        return len(self.pool.hung_workers()) < len(self.pool.workers)

    def status(self, queue: QueueSnapshot | None = None) -> str:
        config = self.running.config
        if self.lifecycle.stopping:
            return "stopping"
        queued = (queue or self.snapshot()).queued
        if self.stats.overloaded_since is not None or queued >= config.queue_size > 0:
            return "overloaded"
        if (
            self.pool.hung_workers() or self.project.source.health.state != "ok"
        ):  # "none" too: no project is a misconfiguration
            return "degraded"
        if (
            self.running.rejected is not None
        ):  # serving, but on an older configuration that the next restart would not start with
            return "degraded"
        return "ok"

    def status_line(self) -> str:
        rejected = self.running.rejected
        queue = self.snapshot()
        where = (
            (f"{rejected.file}" + (f" line {rejected.line}" if rejected.line else ""))
            if rejected and rejected.file
            else ""
        )
        return (
            f"{self.status(queue)}: {queue.in_flight}/{self.running.config.workers} rendering, "
            f"{queue.queued} queued, {queue.rejected_last_minute} rejected in the last minute, "
            f"{queue.rate_per_s:.1f} frames/s, loop lag p99 {self.lag.percentile(99) * 1000:.0f} ms"
            + (
                f"; configuration rejected on reload ({rejected.key or 'see journal'}"
                + (f" in {where}" if where else "")
                + "), old one in force"
                if rejected
                else ""
            )
        )


def hang_policy(hung: list[Worker], workers: int, now: float, threshold: float) -> tuple[list[Worker], list[Worker]]:
    """(hung workers to report, hung workers to replace), given ``WorkerPool.hung_workers``.

    Each is reported once. One is replaced (killed; its request answered 504) after twice the
    threshold, but only while another worker is healthy: when every worker is stuck, they are
    most likely stuck on the same input, a fresh one would be too, and the watchdog decides.
    """
    report = [w for w in hung if not w.hung_reported]
    replace = [w for w in hung if now - w.since > 2 * threshold] if len(hung) < workers else []
    return report, replace
