"""The one place settings reach the running parts: ``apply()``, at start and on SIGHUP.

Every setting is either live (re-applied here on every reload) or marked
``restart=True`` in the schema (``config/schema.py``). A reload never half-applies a
restart-only one: the effective configuration keeps its running value, so every
``config.x`` read anywhere sees what really runs, and ``restart_pending`` names
the ones whose configured value differs (``/health`` shows it). The targets are
reached through small Protocols, so this module imports neither the HTTP side
nor the render side; only ``Limits`` (a value) comes from the protocol layer.
"""

from __future__ import annotations

from typing import Protocol

from flipedit_previewd.config.schema import Config
from flipedit_previewd.http.protocol import Limits


class QueueTarget(Protocol):
    queue_size: int
    queue_timeout: float


class CacheTarget(Protocol):
    capacity: int


class LagTarget(Protocol):
    threshold: float


class PoolTarget(Protocol):
    hang_threshold: float


class GuardTarget(Protocol):
    allowed_hosts: set[str]
    private_reads: bool


class PartTarget(Protocol):
    """A part that sets the live settings it holds itself (also used on a project switch and at start)."""

    def apply(self, config: Config) -> None: ...


class ServiceTarget(Protocol):
    """The render/routing side: the objects holding a live setting (see ``Service``)."""

    config: Config

    @property
    def admission(self) -> QueueTarget: ...
    @property
    def frames(self) -> CacheTarget: ...
    @property
    def lag(self) -> LagTarget: ...
    @property
    def pool(self) -> PoolTarget: ...
    @property
    def served_project(self) -> PartTarget: ...  # db_read_timeout, max_timeline_clips on the current project source
    @property
    def frame_service(self) -> PartTarget: ...  # render-ahead, the render budget, heavy_frame_ttl


class Configurable(Protocol):
    def configure(self, config: Config) -> None: ...


class BudgetTarget(Protocol):
    limit: int


class ServerTarget(Protocol):
    """The connection side: HTTP limits, the request deadline and the Host guard, plus the service behind it."""

    config: Config
    limits: Limits
    request_timeout: float

    @property
    def guard(self) -> GuardTarget: ...
    @property
    def bodies(self) -> BudgetTarget: ...
    @property
    def service(self) -> Configurable: ...


def http_limits(config: Config) -> Limits:
    """The sans-IO parser's limits (connections opened after a reload get the new ones)."""
    return Limits(
        config.max_request_line,
        config.max_header_bytes,
        config.max_headers,
        config.max_body_bytes,
        config.keepalive_timeout,
    )


def apply(new: Config, server: ServerTarget) -> Config:
    """Make ``new`` the running configuration; return the effective one (restart-only values kept).

    At start ``new`` is the running configuration itself, so nothing is pending and every live
    value is set by the same lines a reload runs: start and reload cannot disagree.
    """
    config = server.config.reloaded(new)
    server.config = config
    server.limits = http_limits(config)
    server.request_timeout = config.request_timeout
    server.guard.allowed_hosts = {h.lower() for h in config.allowed_hosts}
    server.guard.private_reads = config.private_reads
    server.bodies.limit = config.max_buffered_body_bytes
    server.service.configure(config)  # through the server's narrow interface: the service sets its own parts
    return config


def configure_service(config: Config, service: ServiceTarget) -> None:
    """The service's live settings (``Service.configure``: at start and on each reload)."""
    service.config = config
    service.admission.queue_size = config.queue_size
    service.admission.queue_timeout = config.queue_timeout
    service.frames.capacity = config.frame_cache_bytes
    service.lag.threshold = config.loop_lag_threshold
    service.pool.hang_threshold = config.hang_threshold
    service.served_project.apply(config)
    service.frame_service.apply(config)
