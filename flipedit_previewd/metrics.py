"""Prometheus metrics, on a registry of our own so tests and reloads start clean."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("flipedit_preview_requests", "Frame requests by outcome", ["outcome"], registry=self.registry)
        self.queue_wait = Histogram("flipedit_preview_queue_wait_seconds", "Time a render waited for a worker",
                                    buckets=BUCKETS, registry=self.registry)
        self.render_time = Histogram("flipedit_preview_render_seconds", "Time a worker spent rendering a frame",
                                     buckets=BUCKETS, registry=self.registry)
        self.total_time = Histogram("flipedit_preview_request_seconds", "Time from request to response for frames",
                                    buckets=BUCKETS, registry=self.registry)
        self.timeline_reads = Counter("flipedit_preview_timeline_reads", "Project database reads", registry=self.registry)

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        Gauge(name, help_text, registry=self.registry).set_function(read)

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))
