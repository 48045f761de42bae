"""Prometheus metrics, on a registry of our own so tests and reloads start clean.

Named by the exposition format's rules, so that rate() and dashboards work without surprises: a
cumulative count is a counter ending in ``_total`` (never a gauge that only grows), a duration ends in
``_seconds``, each HELP says exactly what is counted, ``flipedit_previewd_build_info`` carries the
version as a label, the process collector gives ``process_*`` (CPU, memory, open fds, start time),
and no ``*_created`` series (one per counter and histogram, of no use to a single-process daemon).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from flipedit_previewd import __version__

REFUSAL_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.002,
    0.005,
    0.01,
    0.05,
    0.25,
    1.0,
)  # the goal: p99 <= 1 ms
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Process-wide in prometheus_client (the daemon's process is its own). Debian 12's 0.16 predates it: there
# the *_created lines are taken out of the exposition instead (``exposition``).
_DISABLE_CREATED = getattr(prometheus_client, "disable_created_metrics", None)
if _DISABLE_CREATED is not None:
    _DISABLE_CREATED()


class _ReadCounter(Collector):
    """A counter whose value is read at scrape time from a count the daemon already keeps (the way
    ``Gauge.set_function`` reads a gauge), so the count is kept once and typed as what it is."""

    def __init__(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.name, self.help_text, self.read = name, help_text, read

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.help_text, value=self.read())


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "flipedit_preview_requests",
            "GET /get_frame requests answered, by outcome: rendered, shared "
            "(joined an identical render), cached, not_modified (304), rejected or timeout (503), failed, "
            "cancelled, client_error (4xx: a bad frame index or query); /health and /metrics are not counted",
            ["outcome"],
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "flipedit_preview_queue_wait_seconds",
            "Time a render waited for a worker",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.render_time = Histogram(
            "flipedit_preview_render_seconds",
            "Time a worker spent rendering a frame",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.total_time = Histogram(
            "flipedit_preview_request_seconds",
            "Time from request to response for frames",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.refusal_time = Histogram(
            "flipedit_preview_refusal_seconds",
            "Time the daemon spent on a 503: from the "
            "request's first bytes read (or its connection accepted) to the answer handed to the socket",
            buckets=REFUSAL_BUCKETS,
            registry=self.registry,
        )
        self.timeline_reads = Counter(
            "flipedit_preview_timeline_reads", "Project database reads", registry=self.registry
        )
        build = Gauge(
            "flipedit_previewd_build_info",
            "The running daemon's version (always 1)",
            ["version"],
            registry=self.registry,
        )
        build.labels(__version__).set(1)
        ProcessCollector(registry=self.registry)

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A value that goes up and down (queue depth, lag), read at scrape time."""
        Gauge(name, help_text, registry=self.registry).set_function(read)

    def counter(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A count since start that only grows, read at scrape time; ``name`` ends in ``_total``."""
        assert name.endswith("_total"), name
        self.registry.register(_ReadCounter(name, help_text, read))

    def exposition(self) -> bytes:
        text = bytes(generate_latest(self.registry))
        if _DISABLE_CREATED is None:
            text = b"".join(
                line
                for line in text.splitlines(keepends=True)
                if not (
                    line.split(b" ", 1)[0].split(b"{", 1)[0].endswith(b"_created")
                    or (line.startswith(b"# ") and line.split(b" ")[2:3] and line.split(b" ")[2].endswith(b"_created"))
                )
            )
        return text
