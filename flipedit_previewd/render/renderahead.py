"""Render-ahead: frames of a playback or a scrub are rendered before the editor asks for them.

While the editor plays the timeline it asks for n, n+1, n+2 ... about 30 times a second, and
a scrub walks in one direction. Those frames are predictable from the requests themselves, so
idle workers can render them into the frame cache first and the request becomes a cache hit.

Speculation must never cost real work, so the rules are strict and all enforced elsewhere on
the one render path: speculative jobs sit in their own queue that a worker looks at only when no
real job waits, at most ``workers`` of them run at once (by default all workers but one), a real
request for a frame already queued speculatively takes the job over, and the frame cache never
evicts a frame a real request used to make room for a speculative one. This module only decides
*what* is worth rendering ahead; it is pure bookkeeping on the event loop, testable without
sockets or processes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field

# A pattern needs this many requests (so this many - 1 steps) pointing the same way.
MIN_REQUESTS = 3
# Steps larger than this are jumps, not playback or scrubbing.
MAX_STEP = 8
# Requests further apart than this are not one gesture.
MAX_INTERVAL_S = 0.5


# Runs followed at once per output spec: a playback survives other requests of the same size in between.
MAX_RUNS = 4


@dataclass
class Run:
    """Consecutive requests walking one way: (time, frame) pairs, newest last."""

    points: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=MIN_REQUESTS))

    def extends(self, now: float, frame: int) -> int:
        """How far ``frame`` is from this run's end if it continues the run, else 0."""
        last_t, last = self.points[-1]
        delta = frame - last
        if delta == 0 or abs(delta) > MAX_STEP or now - last_t > MAX_INTERVAL_S:
            return 0
        if len(self.points) >= 2 and (self.points[-1][1] - self.points[-2][1] > 0) != (delta > 0):
            return 0
        return abs(delta)

    def step(self) -> int:
        """The run's last step once it is long enough to be a gesture, else 0."""
        if len(self.points) < MIN_REQUESTS:
            return 0
        return self.points[-1][1] - self.points[-2][1]

    def interval(self) -> float:
        if len(self.points) < 2:
            return MAX_INTERVAL_S
        return (self.points[-1][0] - self.points[0][0]) / (len(self.points) - 1)


@dataclass
class Track:
    """Recent real requests for one output size (playback is per preview panel)."""

    runs: list[Run] = field(default_factory=list)
    revision: str = ""

    def add(self, now: float, frame: int) -> Run | None:
        """Extend the run ``frame`` continues (the nearest), or start a new one; None for a repeat."""
        if any(run.points[-1][1] == frame for run in self.runs):
            return None  # the same frame again (a drag, a poll): no direction to follow
        best = min(((d, run) for run in self.runs if (d := run.extends(now, frame))), key=lambda x: x[0], default=None)
        if best is None:
            run = Run()
            self.runs.append(run)
            del self.runs[:-MAX_RUNS]
        else:
            run = best[1]
        run.points.append((now, frame))
        return run

    def last_seen(self) -> float:
        return max((run.points[-1][0] for run in self.runs), default=0.0)

    def interval(self) -> float:
        return min((run.interval() for run in self.runs), default=MAX_INTERVAL_S)


@dataclass
class Plan:
    """What the service should queue speculatively after one real request."""

    spec: Hashable
    frames: list[int]
    revision: str


WAITED_MS = 5.0  # a real render queued longer than this waited for a worker (not just for a thread to wake)
CONTENTION_WEIGHT = 0.1  # about the last ten real renders
CONTENDED_SHARE = 0.5  # most real renders wait: the workers are saturated by real work


class RenderAhead:
    """Recognises playback and scrubbing per output spec and proposes the next frames.

    ``observe`` is called for every real frame request (cache hits included: a playback that is
    served from the cache must keep being predicted, or the cache runs dry after ``frames``).
    """

    def __init__(self, frames: int, max_tracks: int = 8) -> None:
        self.frames = frames
        self.max_tracks = max_tracks
        self.tracks: dict[Hashable, Track] = {}
        self.counters: dict[str, int] = {"planned": 0, "rendered": 0, "suppressed": 0, "stale": 0, "failed": 0}
        # Share of recent real renders that had to wait for a worker (moving average): when several
        # clients keep every worker busy (four editors walking the same frames), a guess only takes a
        # worker from them: measured 191 -> 154 frames/s before this gate (bench, reliability probe).
        self.contention = 0.0

    def note_real_render(self, queue_ms: float) -> None:
        waited = 1.0 if queue_ms > WAITED_MS else 0.0
        self.contention += CONTENTION_WEIGHT * (waited - self.contention)

    @property
    def contended(self) -> bool:
        return self.contention > CONTENDED_SHARE

    def observe(self, now: float, spec: Hashable, frame: int, revision: str, total_frames: int) -> Plan | None:
        track = self.tracks.get(spec)
        if track is None:
            if len(self.tracks) >= self.max_tracks:
                oldest = min(self.tracks, key=lambda k: self.tracks[k].last_seen())
                del self.tracks[oldest]
            track = self.tracks[spec] = Track()
        if track.revision != revision:
            # A new timeline revision (a drag, an edit): what was predicted shows the old picture.
            track.runs.clear()
            track.revision = revision
        run = track.add(now, frame)
        step = run.step() if run is not None else 0
        if step == 0 or self.frames <= 0:
            return None
        upper = total_frames if total_frames > 0 else frame + step * self.frames + 1
        wanted = [f for f in (frame + step * i for i in range(1, self.frames + 1)) if 0 <= f < upper]
        if not wanted:
            return None
        return Plan(spec, wanted, revision)

    def active(self, now: float) -> list[Hashable]:
        """Output specs whose gesture is still going on (asked within a few of its intervals)."""
        alive = []
        for spec, track in list(self.tracks.items()):
            if not track.runs:
                continue
            if now - track.last_seen() > max(MAX_INTERVAL_S, 3 * track.interval()):
                del self.tracks[spec]
            else:
                alive.append(spec)
        return alive

    def forget(self) -> None:
        self.tracks.clear()
