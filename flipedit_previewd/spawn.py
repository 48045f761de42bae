"""Starting a worker process, the daemon's very first step.

Each worker's interpreter start and PyAV/Pillow import (about 150-250 ms) is the longest stretch of a
cold start (bench/footprint.py); it overlaps the daemon's own start only if the worker starts before the
daemon imports the rest of itself. So this module imports what ``subprocess`` needs and nothing of the
render side: ``workers.WorkerPool`` adopts these processes later and sends each its settings.

Not multiprocessing's spawn: that starts a resource-tracker process (6.6 MB PSS idle, for semaphores the
daemon never makes) and re-imports the daemon's ``__main__`` (the HTTP side) in every worker.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

# The daemon's import path travels in the environment (/proc/PID/environ is readable by its owner only;
# argv is readable by every local user) and is dropped from it at once.
_PATH_VARIABLE = "FLIPEDIT_WORKER_SYS_PATH"
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CHILD_CODE = (f"import json, os, sys; sys.path[:] = json.loads(os.environ.pop({_PATH_VARIABLE!r})); "
               "from flipedit_previewd.workers import child_main; child_main()")


class WorkerProcess:
    """A worker process and our end of its socket pair (``sock``, until the pool wraps it)."""

    def __init__(self, index: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with theirs:
                # The daemon's interpreter flags (-I, -s, -E ...), as multiprocessing passes them: the worker
                # runs under the same isolation; -P keeps the working directory off the path. -S: no site
                # module (its editable-install finder alone is 14 ms of the worker's start); the import path
                # comes whole from the daemon, its own package's directory first, so the worker imports the
                # very files the daemon runs (a source tree, a venv, the .deb).
                flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
                path = [_PACKAGE_ROOT, *sys.path]
                self.popen = subprocess.Popen(
                    [sys.executable, *flags, "-S", "-P", "-c", _CHILD_CODE, f"flipedit-previewd-worker-{index}", str(theirs.fileno())],
                    stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),), env={**os.environ, _PATH_VARIABLE: json.dumps(path)})
        except BaseException:
            ours.close()
            raise
        self.sock = ours

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self) -> None:
        if self.popen.returncode is None:
            self.popen.kill()

    def join(self, timeout: float | None = None) -> None:
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def is_alive(self) -> bool:
        return self.popen.poll() is None


def start_workers(count: int) -> list[WorkerProcess]:
    started: list[WorkerProcess] = []
    try:
        for index in range(count):
            started.append(WorkerProcess(index))
    except BaseException:
        for process in started:
            process.kill()
        raise
    return started
