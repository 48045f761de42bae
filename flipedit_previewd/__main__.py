"""Entry point of the daemon; the only place that decides exit codes.

Exit codes: 0 clean stop, 2 configuration error (a bad value, an unknown key or variable, a
malformed --listen address), 3 socket error (an address that cannot be bound, a bad socket
from systemd), 1 anything else.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from flipedit_previewd import __version__
from flipedit_previewd.common.gcrypt import init_without_secure_memory
from flipedit_previewd.common.journal import EventLog
from flipedit_previewd.config.schema import Config, ConfigError, from_args

EXIT_OK, EXIT_CONFIG, EXIT_SOCKET = 0, 2, 3  # 1: an uncaught exception (Python's own)


def main(argv: Sequence[str] | None = None) -> int:
    init_without_secure_memory()  # first, as in every process of the daemon (common/gcrypt.py)
    args = list(sys.argv[1:] if argv is None else argv)
    log = EventLog()
    try:
        config, namespace = from_args(args)
    except ConfigError as exc:
        log.emit("config_error", str(exc), "err")
        if log.to_stderr is False:
            print(f"flipedit-previewd: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if getattr(namespace, "version", False):
        print(__version__)
        return EXIT_OK
    if getattr(namespace, "print_config", False):
        print(config.describe())
        return EXIT_OK

    from flipedit_previewd.render.pool import WorkerPool
    from flipedit_previewd.sd.sockets import SocketError

    def reload_config() -> Config:  # SIGHUP: the same command line and environment, the files read again
        return from_args(args)[0]

    pool = WorkerPool.for_config(config)
    try:
        # The workers first: each one's interpreter start and PyAV/Pillow import (about 150 ms) overlaps
        # the daemon's own start-up instead of following it (cold start, bench/footprint.py).
        pool.start()
        from flipedit_previewd.app.service import Service
        from flipedit_previewd.http.lifecycle import LifecycleState
        from flipedit_previewd.http.server import Server

        lifecycle = LifecycleState()  # one state: the server moves it, the service reads it
        server = Server(config, Service(config, log, lifecycle, pool), lifecycle, reload_config, log)
        return asyncio.run(server.serve())
    except SocketError as exc:
        log.emit("config_error", f"socket error: {exc}", "err")
        if log.to_stderr is False:
            print(f"flipedit-previewd: socket error: {exc}", file=sys.stderr)
        return EXIT_SOCKET
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        pool.stop()  # already stopped by a drain; not when start-up failed (a socket error, a failed spawn)
        log.stop_writer()  # entries still queued for the journal thread are written before exit


if __name__ == "__main__":
    sys.exit(main())
