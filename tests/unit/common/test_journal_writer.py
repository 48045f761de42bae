"""The journal's writer thread (common/journal.py)."""

from __future__ import annotations

import time

import pytest


def test_journal_writer_keeps_order_counts_drops_and_flushes_on_stop(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flipedit_previewd.common import journal

    monkeypatch.setattr(journal, "JOURNAL_QUEUE", 3)
    log = journal.EventLog(to_journal=False, to_stderr=True)
    log.start_writer()
    with log._lock:  # the writer is stuck (journald slow): emit must not wait for it
        t0 = time.monotonic()
        for i in range(10):
            log.emit("request", f"entry {i}", "info")
        assert time.monotonic() - t0 < 0.5
    log.stop_writer()
    lines = capsys.readouterr().err.splitlines()
    written = [line for line in lines if "request: entry" in line]
    assert 3 <= len(written) < 10 and written == sorted(written, key=lambda line: int(line.rsplit(" ", 1)[1]))
    dropped = [line for line in lines if "journal_dropped" in line]
    assert len(dropped) == 1 and f"{10 - len(written)} journal entries dropped" in dropped[0]
    log.emit("request", "after stop", "info")  # synchronous again
    assert "after stop" in capsys.readouterr().err
