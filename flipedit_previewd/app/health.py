"""What the daemon reports about itself: the /health document and the per-minute summary.

Both only read state (admission, the pool, the frame cache, the project source, the counters the
request path keeps); neither reads a database nor waits for a lock held by a render, so /health
answers at once even while every worker is busy or stuck.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from flipedit_previewd import __version__
from flipedit_previewd.common.percentiles import summary

if TYPE_CHECKING:
    from flipedit_previewd.app.service import Service


def health_report(s: Service) -> dict[str, Any]:
    lat = sorted(s.latencies)
    hung = len(s.pool.hung_workers())
    timeline = s.source.last  # never a database read here: /health must answer at once
    return {
        "status": s.supervisor.status(),
        "queue_size": len(s.admission.queue),
        "active_requests": len(s.admission.in_flight),
        "max_concurrent": s.config.workers,
        "queue_capacity": s.config.queue_size,
        "in_flight": len(s.admission.in_flight),
        "capacity": s.config.workers - hung,
        "connections": s.open_connections(),
        "max_connections": s.config.max_connections,
        "rate_per_s": round(s.admission.rate.rate(), 2),
        "rejected_last_minute": s.admission.rejected_recently(60),
        "counters": {**s.admission.counters, **{f"outcome_{k}": v for k, v in s.summary.items()},
                     "completed": s.pool.completed, "workers_replaced": s.pool.replaced},
        "latency_ms": {**summary(lat), "samples": len(lat)},
        "workers": s.pool.snapshot(),
        "sandbox": s.pool.sandbox,  # the workers' confinement (confine.py); None until a worker started
        "project": {"path": s.source.path, "state": s.source.health.state, "error": s.source.health.error,
                    "reads": s.source.health.reads, "revision": timeline.revision, "source": timeline.source,
                    "clips": len(timeline.clips), "following": s.follower.state() if s.follower else None},
        "cache": {"frames": len(s.frames), "bytes": s.frames.size, "hits": s.frames.hits, "misses": s.frames.misses},
        "render_ahead": s.render_ahead_stats(),
        "proxies": s.proxies.snapshot(),  # made / in progress / queued, progress and disk use (proxy/manager.py)
        "keepalive_timeout_s": s.config.keepalive_timeout,
        "restart_pending": list(s.config.restart_pending),  # restart-only settings changed in the configuration
        # The last reload's configuration could not be used (the old one runs; a restart would fail): why, where.
        "config_error": s.config_error.fields() if s.config_error else None,
        "loop_lag": s.lag.snapshot(),
        "rejections": {"total": s.rejections.total, "by_reason": dict(s.rejections.by_reason)},
        "client_errors": {str(status): n for status, n in sorted(s.client_errors.total.items())},
        "offload": {"pending": s.offload.pending, "capacity": s.offload.capacity, "rejected": s.offload.rejected},
        "media_problems": s.frame_service.media_problems(),
        "media_roots": s.roots.last_kept,
        "media_roots_skipped": [f"{root} ({why})" for root, why in s.roots.last_skipped],
        "media_roots_missing": s.roots.last_missing,  # configured, kept, but not an existing directory (warned)
        "uptime_s": round(time.monotonic() - s.started, 1),
        "version": __version__,
        "pid": os.getpid(),
    }


def flush_summary(s: Service) -> None:
    """Once a minute (and at stop): one journal entry for the cheap outcomes (cache hits, 304s) and every
    answer that was the client's fault (4xx, protocol errors, access refusals: ``ClientErrors``), with examples."""
    counts = {k: v for k, v in s.summary.items() if k in ("cached", "not_modified", "health")}
    errors, examples, last = s.client_errors.take()
    counts.update({f"http_{status}": n for status, n in errors.items()})
    now = {"rendered": s.ahead.counters["rendered"], "hits": s.frames.ahead_hits, "wasted": s.frames.ahead_wasted}
    ahead = {k: v - s.ahead_flushed.get(k, 0) for k, v in now.items()}
    if any(counts.values()) or any(ahead.values()):
        fields = {f"LAST_ERROR_{status}": what for status, what in last.items()}
        fields.update({f"EXAMPLES_{status}": " | ".join(seen) for status, seen in examples.items()})
        text = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()) if v)
        text += "".join(f"; {status} e.g. {' | '.join(seen)}" for status, seen in sorted(examples.items()))
        if any(ahead.values()):
            text += "; render-ahead " + ", ".join(f"{k}={v}" for k, v in ahead.items())
        s.log.emit("summary", "cheap requests: " + text.lstrip("; "), "info",
                   **{f"COUNT_{k.upper()}": v for k, v in counts.items() if v}, **fields,
                   **{f"AHEAD_{k.upper()}": v for k, v in ahead.items() if v})
    s.ahead_flushed = now
    for key in ("cached", "not_modified", "health"):
        if key in s.summary:
            s.summary[key] = 0
