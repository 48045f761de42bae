"""What the daemon reports about itself: the /health document and the per-minute summary.

``Health`` is handed the parts it reads (the dispatcher's snapshot, the pool, the frame use-case,
the project, the request stats, the running configuration) and only reads them: it never reads a
database nor waits for a lock held by a render, so /health answers at once even while every worker
is busy or stuck. The per-minute summary takes what it reports (``RequestStats.take_cheap``,
``ClientErrors.take``) and keeps its own mark of the render-ahead counters.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from flipedit_previewd import __version__
from flipedit_previewd.app.frames import FrameService
from flipedit_previewd.app.project import Project
from flipedit_previewd.app.state import RequestStats, RunningConfig
from flipedit_previewd.common.journal import EventLog
from flipedit_previewd.common.looplag import LoopLag
from flipedit_previewd.common.offload import BoundedOffload
from flipedit_previewd.common.percentiles import summary
from flipedit_previewd.common.rejections import ClientErrors, RejectionSummary
from flipedit_previewd.render.dispatch import QueueSnapshot
from flipedit_previewd.render.pool import WorkerPool


class Health:
    def __init__(
        self,
        *,
        running: RunningConfig,
        stats: RequestStats,
        snapshot: Callable[[], QueueSnapshot],
        pool: WorkerPool,
        frames: FrameService,
        project: Project,
        lag: LoopLag,
        rejections: RejectionSummary,
        client_errors: ClientErrors,
        offload: BoundedOffload,
        status: Callable[[], str],
        log: EventLog,
        proxies: Callable[[], dict[str, Any]] = lambda: {},
    ) -> None:
        self.running = running
        self.stats = stats
        self.snapshot = snapshot
        self.pool = pool
        self.frames = frames
        self.project = project
        self.lag = lag
        self.rejections = rejections
        self.client_errors = client_errors
        self.offload = offload
        self.status = status  # the one word (``Supervisor.status``)
        self.log = log
        self.proxies = proxies  # the proxy manager's snapshot (proxy/manager.py)
        self.open_connections: Callable[[], int] = lambda: 0  # the server's count, given at start
        self.started = time.monotonic()
        self.ahead_flushed: dict[str, int] = {}  # the render-ahead counters at the last summary

    def report(self) -> dict[str, Any]:
        config, rejected = self.running.config, self.running.rejected
        queue = self.snapshot()
        lat = sorted(self.stats.latencies)
        pool, cache, roots = self.pool, self.frames.cache, self.project.roots
        hung = len(pool.hung_workers())
        return {
            "status": self.status(),
            "queue_size": queue.queued,
            "active_requests": queue.in_flight,
            "max_concurrent": config.workers,
            "queue_capacity": config.queue_size,
            "in_flight": queue.in_flight,
            "capacity": config.workers - hung,
            "connections": self.open_connections(),
            "max_connections": config.max_connections,
            "rate_per_s": round(queue.rate_per_s, 2),
            "rejected_last_minute": queue.rejected_last_minute,
            "counters": {
                **queue.counters,
                **{f"outcome_{k}": v for k, v in self.stats.summary.items()},
                "completed": pool.completed,
                "workers_replaced": pool.replaced,
            },
            "latency_ms": {**summary(lat), "samples": len(lat)},
            "workers": pool.snapshot(),
            "sandbox": pool.sandbox,  # the workers' confinement (confine.py); None until a worker started
            "project": self.project.health(),
            "cache": {"frames": len(cache), "bytes": cache.size, "hits": cache.hits, "misses": cache.misses},
            "render_ahead": self.frames.render_ahead_stats(),
            "proxies": self.proxies(),  # made / in progress / queued, progress and disk use (proxy/manager.py)
            "keepalive_timeout_s": config.keepalive_timeout,
            "restart_pending": list(config.restart_pending),  # restart-only settings changed in the configuration
            # The last reload's configuration could not be used (the old one runs; a restart would fail): why, where.
            "config_error": rejected.fields() if rejected else None,
            "loop_lag": self.lag.snapshot(),
            "rejections": {"total": self.rejections.total, "by_reason": dict(self.rejections.by_reason)},
            "client_errors": {str(status): n for status, n in sorted(self.client_errors.total.items())},
            "offload": {
                "pending": self.offload.pending,
                "capacity": self.offload.capacity,
                "rejected": self.offload.rejected,
            },
            "media_problems": self.frames.media_problems(),
            "media_roots": roots.last_kept,
            "media_roots_skipped": [f"{root} ({why})" for root, why in roots.last_skipped],
            "media_roots_missing": roots.last_missing,  # configured, kept, but not an existing directory (warned)
            "uptime_s": round(time.monotonic() - self.started, 1),
            "version": __version__,
            "pid": os.getpid(),
        }

    def flush_summary(self) -> None:
        """Once a minute (and at stop): one journal entry for the cheap outcomes (cache hits, 304s) and every
        answer that was the client's fault (4xx, protocol errors, access refusals: ``ClientErrors``), with examples."""
        counts = self.stats.take_cheap()
        errors, examples, last = self.client_errors.take()
        counts.update({f"http_{status}": n for status, n in errors.items()})
        cache = self.frames.cache
        now = {
            "rendered": self.frames.ahead.counters["rendered"],
            "hits": cache.ahead_hits,
            "wasted": cache.ahead_wasted,
        }
        ahead = {k: v - self.ahead_flushed.get(k, 0) for k, v in now.items()}
        if any(counts.values()) or any(ahead.values()):
            fields = {f"LAST_ERROR_{status}": what for status, what in last.items()}
            fields.update({f"EXAMPLES_{status}": " | ".join(seen) for status, seen in examples.items()})
            text = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()) if v)
            text += "".join(f"; {status} e.g. {' | '.join(seen)}" for status, seen in sorted(examples.items()))
            if any(ahead.values()):
                text += "; render-ahead " + ", ".join(f"{k}={v}" for k, v in ahead.items())
            self.log.emit(
                "summary",
                "cheap requests: " + text.lstrip("; "),
                "info",
                **{f"COUNT_{k.upper()}": v for k, v in counts.items() if v},
                **fields,
                **{f"AHEAD_{k.upper()}": v for k, v in ahead.items() if v},
            )
        self.ahead_flushed = now
