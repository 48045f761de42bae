"""The daemon's main process routes requests and never renders: it must not load PyAV or Pillow
(their libraries cost idle memory in every process that maps them, and their import is on the
cold-start path before the workers are spawned; bench/footprint.py measures both)."""

from __future__ import annotations

import subprocess
import sys


def test_main_process_imports_neither_pyav_nor_pillow() -> None:
    code = (
        "import sys; import flipedit_previewd.__main__, flipedit_previewd.http.server, flipedit_previewd.render.pool, "
        "flipedit_previewd.app.service, flipedit_previewd.proxy.manager; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'av', 'PIL', 'numpy'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_journal_entries_carry_the_callers_code_location_without_a_stack_walk(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """python-systemd walks the stack (and reads source lines) per entry unless CODE_* are given; a
    flood of 503s logs one entry each. Given, they also name the real caller instead of emit()."""
    import traceback

    from flipedit_previewd.common import journal

    sent: list[dict[str, object]] = []

    class Recorder:
        @staticmethod
        def send(message: str, **fields: object) -> None:
            if fields.get("CODE_LINE") is None:
                fields["walked"] = traceback.extract_stack(limit=2)  # what python-systemd would do
            sent.append(fields)

    monkeypatch.setattr(journal, "_journal", Recorder)
    log = journal.EventLog(to_journal=True, to_stderr=False)

    def refuse() -> None:
        log.emit("request", "GET /get_frame/1 -> 503", "warning", STATUS=503)

    refuse()
    assert sent and "walked" not in sent[0]
    assert sent[0]["CODE_FUNC"] == "refuse" and str(sent[0]["CODE_FILE"]).endswith("test_footprint.py")


def test_workers_start_without_multiprocessing_or_its_resource_tracker() -> None:
    """multiprocessing's spawn costs a resource-tracker process (6.6 MB PSS, for semaphores the
    daemon never makes) and re-imports the daemon's __main__ in every worker."""
    import os
    from pathlib import Path

    from flipedit_previewd.render.pool import WorkerPool
    from flipedit_previewd.worker.wire import WorkerSettings
    from tests.support.helpers import descendants, wait_for

    pool = WorkerPool(2, WorkerSettings(1 << 22, 1 << 24), hang_threshold=30.0)
    pool.start()
    try:
        assert pool.workers[0].conn.poll(0) is False  # a live pair, nothing unasked for

        def command_lines() -> dict[int, str]:
            return {
                pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                for pid in descendants(os.getpid())
            }

        # Right after Popen returns, a child still in its exec can show an empty command line for a moment.
        workers = {w.process.pid for w in pool.workers}
        assert wait_for(lambda: all(command_lines().get(pid) for pid in workers), 5, 0.02)
        commands = command_lines()
        assert workers <= set(commands)
        assert not any("resource_tracker" in c or "multiprocessing" in c for c in commands.values()), commands
        assert all("child_main" in commands[pid] for pid in workers)
        # The import path goes by the environment (its owner's only), not argv (every local user's).
        assert not any("site-packages" in commands[pid] for pid in workers)
    finally:
        pool.stop()
    assert not any(w.process.is_alive() for w in pool.workers)
