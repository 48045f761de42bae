"""Fixtures of the system layer."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.system.deploy import UNIT, deployed  # noqa: F401  (the fixture, shared by every system test module)


def tracebacks(entries: list[dict[str, object]]) -> list[str]:
    """The messages of journal entries that hold a Python traceback (MESSAGE may be text or a byte list)."""
    found = []
    texts = []
    for entry in entries:
        message = entry.get("MESSAGE", "")
        texts.append(
            (
                str(entry.get("_PID", "")),
                bytes(message).decode("utf-8", "replace") if isinstance(message, list) else str(message),
            )
        )
    for at, (pid, text) in enumerate(texts):
        if "Traceback" in text:
            # stderr reaches the journal a line an entry: the traceback is this entry and the same process's after it
            after = [t for p, t in texts[at + 1 :] if p == pid][:25]
            found.append("\n".join([f"(pid {pid}) {text}", *after]) if text.strip().startswith("Traceback") else text)
    return found


@pytest.fixture(autouse=True)
def no_traceback_in_the_journal(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each system test that used the sandbox: no "Traceback" in the daemon's journal since it began.

    Integration tests read the daemon's output for tracebacks; under systemd the output (the daemon's,
    its workers', previewctl's when run as the unit) is in the sandbox's journal, so look there. Set up
    before the test's own fixtures, so this runs after they stopped the units (the drain is covered too).
    """
    if "sandbox" not in request.fixturenames:
        yield
        return
    since = int(time.time()) - 1
    yield
    box = request.getfixturevalue("sandbox")
    box.run("journalctl", "--sync", check=False)
    entries = [
        entry
        for match in (
            f"_SYSTEMD_USER_UNIT={UNIT}",
            "_SYSTEMD_USER_UNIT=flipedit-preview.socket",
            f"_SYSTEMD_UNIT={UNIT}",
        )
        for entry in box.journal(f"--since=@{since}", match)
    ]
    found = tracebacks(entries)
    assert not found, "a traceback in the journal:\n" + "\n---\n".join(found[:3])
