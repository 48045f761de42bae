"""Supervision: the health tick, the hang policy and the status text.

``Supervisor`` runs on the event loop once per tick and reads both sides of the
daemon (admission, the worker pool, the project source): deadlines, the end of an overload, a
locked database retried, the project list followed, hung workers reported and replaced. It also
says what the daemon's state is, in one word (``status``) and in one line (``STATUS=``).

The heartbeat that asks for this tick is ``sd.watchdog.Watchdog``, a thread of its own.

"Hung" has one definition, ``WorkerPool.hung_workers`` (rendering one frame past hang_threshold).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flipedit_previewd.app.service import Service
    from flipedit_previewd.render.pool import Worker



class Supervisor:
    """The tick, the hang policy and the status text; on the event loop, for one service."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def tick(self) -> None:
        """Once per health tick on the loop: deadlines, overload end, hung workers, summaries."""
        s = self.service
        s.admission.expire_overdue()
        if not s.ahead.active(time.monotonic()):
            s.admission.retain_ahead(lambda p: False)  # the playback or scrub stopped
        if s.source.health.state not in ("ok", "none") and not s.source.override:
            # A locked or unreadable database: try again now and then even with no requests, so /health
            # says "ok" again once the writer is done (the read itself respects its retry delay).
            def retry() -> None:
                s.source.current()
                s._publish_source_events()

            s.offload.submit_nowait(retry)
        s.follow_in_background()  # notice a switch of project with no requests too
        s.proxies.note(s.source.last)  # a timeline's new videos get proxies, made in the background (proxy/manager.py)
        if s.overloaded_since is not None and not s.admission.rejected_recently(5):
            duration = time.monotonic() - s.overloaded_since
            s.overloaded_since = None
            s.log.emit("overload_ended", f"overload ended after {duration:.1f} s", "notice", DURATION_S=round(duration, 1))
        self.replace_hung()

    def replace_hung(self) -> None:
        """Report each hung worker once, replace those ``hang_policy`` says (see there)."""
        pool, log = self.service.pool, self.service.log
        now = time.monotonic()
        report, replace = hang_policy(pool.hung_workers(now), len(pool.workers), now, pool.hang_threshold)
        for worker in report:
            worker.hung_reported = True
            log.emit("worker_hung", f"worker {worker.index} stuck on frame {worker.frame} for {now - worker.since:.1f} s",
                     "err", WORKER=worker.index, WORKER_PID=worker.process.pid, FRAME=worker.frame)
        for worker in replace:
            log.emit("worker_replaced", f"worker {worker.index} replaced after hanging on frame {worker.frame}",
                     "warning", WORKER=worker.index, WORKER_PID=worker.process.pid, FRAME=worker.frame)
            pool.replace_hung(worker, worker.job_id)

    def can_progress(self) -> bool:
        """The pool can make progress unless every worker is stuck past the hang threshold."""
        pool = self.service.pool
        return len(pool.hung_workers()) < len(pool.workers)

    def status(self) -> str:
        s = self.service
        if s.lifecycle.stopping:
            return "stopping"
        if s.overloaded_since is not None or len(s.admission.queue) >= s.config.queue_size > 0:
            return "overloaded"
        if s.pool.hung_workers() or s.source.health.state != "ok":  # "none" too: no project is a misconfiguration
            return "degraded"
        if s.config_error is not None:  # serving, but on an older configuration that the next restart would not start with
            return "degraded"
        return "ok"

    def status_line(self) -> str:
        s = self.service
        rejected = s.config_error
        where = (f"{rejected.file}" + (f" line {rejected.line}" if rejected.line else "")) if rejected and rejected.file else ""
        return (f"{self.status()}: {len(s.admission.in_flight)}/{s.config.workers} rendering, "
                f"{len(s.admission.queue)} queued, {s.admission.rejected_recently(60)} rejected in the last minute, "
                f"{s.admission.rate.rate():.1f} frames/s, loop lag p99 {s.lag.percentile(99) * 1000:.0f} ms"
                + (f"; configuration rejected on reload ({rejected.key or 'see journal'}"
                   + (f" in {where}" if where else "") + "), old one in force" if rejected else ""))


def hang_policy(hung: list[Worker], workers: int, now: float, threshold: float) -> tuple[list[Worker], list[Worker]]:
    """(hung workers to report, hung workers to replace), given ``WorkerPool.hung_workers``.

    Each is reported once. One is replaced (killed; its request answered 504) after twice the
    threshold, but only while another worker is healthy: when every worker is stuck, they are
    most likely stuck on the same input, a fresh one would be too, and the watchdog decides.
    """
    report = [w for w in hung if not w.hung_reported]
    replace = [w for w in hung if now - w.since > 2 * threshold] if len(hung) < workers else []
    return report, replace
