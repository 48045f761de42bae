"""Fault injection for the tests: what a worker does wrong on purpose, when the test harness asks.

Not a setting: the one switch is the environment variable ``FLIPEDIT_WORKER_FAILPOINT`` (``VARIABLE``),
which only the tests set (the daemon's environment, inherited by its workers; in the system tests the
test's own ``Environment=`` drop-in), never the shipped units, never the configuration (its
``FLIPEDIT_PREVIEWD_`` prefix refuses unknown variables). A worker reads it once, at its entry point
(``worker.main.child_main``), and drops it from its environment. The values are listed in
docs/tests.md ("Failpoints"); one failpoint at a time:

- ``sleep:SECONDS``: each render (not the warm-up) first sleeps, so that renders are slow.
- ``hang``: each render (not the warm-up) never ends, as on a wedged decoder.
- ``crash:SUBSTRING``: a render with a clip whose source path contains SUBSTRING (and is not yet
  drawn as a placeholder) kills the worker, as media that crashes FFmpeg would.
- ``nice:FILE``: each render appends ``real|ahead PRIORITY`` to FILE (opened before confinement).
- ``escape`` or ``escape:PATH``: at its first job, once confined, the worker tries to open PATH
  (default /etc/hostname), connect to 127.0.0.1 and run /bin/sh, and reports each attempt; the
  daemon logs them as ``sandbox_violation``.
- ``badreply:FRAME``: the worker answers FRAME with a pickled tuple, the reply format before
  ``wire.py``, as a worker taken over might: the daemon must refuse it without loading it.

A value not in this list stops the worker at its start with a traceback (the daemon's log then
shows it): a mistyped failpoint must fail its test, not pass it silently.
"""

from __future__ import annotations

import enum
import errno
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from flipedit_previewd.timeline.model import Timeline
from flipedit_previewd.worker.wire import Attempt, Job

VARIABLE = "FLIPEDIT_WORKER_FAILPOINT"  # not FLIPEDIT_PREVIEWD_*: that prefix is the configuration's


class Point(enum.Enum):
    NONE = ""
    SLEEP = "sleep"
    HANG = "hang"
    CRASH = "crash"
    NICE = "nice"
    ESCAPE = "escape"
    BADREPLY = "badreply"


@dataclass
class Failpoint:
    point: Point = Point.NONE
    argument: str = ""
    record: IO[str] | None = None  # nice: the file, opened by ``prepare`` before confinement

    @classmethod
    def parse(cls, value: str) -> Failpoint:
        name, _, argument = value.partition(":")
        try:
            point = Point(name)
        except ValueError:
            raise ValueError(f"{VARIABLE}: unknown failpoint {value!r}") from None
        if point in (Point.SLEEP, Point.BADREPLY):
            try:
                float(argument) if point is Point.SLEEP else int(argument)
            except ValueError:
                raise ValueError(f"{VARIABLE}: {name} needs a number, not {argument!r}") from None
        elif point in (Point.CRASH, Point.NICE) and not argument:
            raise ValueError(f"{VARIABLE}: {name} needs an argument")
        elif point is Point.ESCAPE:
            argument = argument or "/etc/hostname"
        elif point in (Point.NONE, Point.HANG) and argument:
            raise ValueError(f"{VARIABLE}: {name or 'nothing'} takes no argument")
        return cls(point, argument)

    @classmethod
    def from_environ(cls) -> Failpoint:
        """The test harness's failpoint, taken out of this process's environment (decoders never see it)."""
        return cls.parse(os.environ.pop(VARIABLE, ""))

    def prepare(self) -> None:
        """Before confinement: a confined worker can write nowhere."""
        if self.point is Point.NICE:
            self.record = open(self.argument, "a", buffering=1)  # noqa: SIM115 - kept open for the worker's life

    def before_render(self, job: Job, timeline: Timeline) -> None:
        """At the start of a render, on the thread that renders it (the warm-up's excepted)."""
        if self.point is Point.NONE or timeline.source == "warm-up":
            return
        if self.point is Point.SLEEP:
            time.sleep(float(self.argument))
        elif self.point is Point.HANG:
            while True:
                time.sleep(3600)
        elif self.point is Point.CRASH:
            if any(
                self.argument in c.source_path and c.source_path not in job.broken
                for c in timeline.layers_at(job.frame)
            ):
                os._exit(139)  # the process dies as a segfault would end it
        elif self.point is Point.NICE and self.record is not None:
            priority = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            self.record.write(f"{'ahead' if job.speculative else 'real'} {priority}\n")

    def after_confinement(self) -> tuple[Attempt, ...]:
        """At the first job, once the worker is confined: the escape attempts, if asked for."""
        return try_escape(self.argument) if self.point is Point.ESCAPE else ()

    def replaces_reply(self, job: Job) -> bool:
        """Whether the answer to this job is to be the pickled tuple instead of a reply."""
        return self.point is Point.BADREPLY and job.frame == int(self.argument)


def try_escape(target: str) -> tuple[Attempt, ...]:
    """What a taken-over decoder would try first: read outside its roots, connect, run a program; each outcome."""
    attempts: list[Attempt] = []

    def attempt(what: str, call: Callable[[], None]) -> None:
        try:
            call()
            attempts.append(Attempt(what, False, ""))
        except OSError as exc:
            code = exc.errno or 0
            attempts.append(Attempt(what, code in (errno.EPERM, errno.EACCES), errno.errorcode.get(code, str(exc))))

    def connect() -> None:
        with socket.socket() as sock:
            sock.settimeout(1.0)
            sock.connect(("127.0.0.1", 9))

    def run_shell() -> None:
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 0"], {})
        os.waitpid(pid, 0)

    attempt(f"open {target}", lambda: os.close(os.open(target, os.O_RDONLY | os.O_NONBLOCK)))
    attempt("connect 127.0.0.1:9", connect)
    attempt("exec /bin/sh", run_shell)
    return tuple(attempts)
