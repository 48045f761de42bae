"""Fault injection stays in the tests' hands: one environment variable, documented, never a setting, never set by a "
"unit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flipedit_previewd.config.schema import SETTINGS
from flipedit_previewd.timeline.model import Clip, Timeline, Track
from flipedit_previewd.worker import failpoints
from flipedit_previewd.worker.failpoints import VARIABLE, Failpoint, Point
from flipedit_previewd.worker.output import OutputSpec
from flipedit_previewd.worker.wire import Job
from tests.support.helpers import ROOT


def test_each_documented_value_parses_and_a_mistyped_one_is_refused() -> None:
    assert Failpoint.parse("") == Failpoint()
    assert Failpoint.parse("sleep:0.5") == Failpoint(Point.SLEEP, "0.5")
    assert Failpoint.parse("hang") == Failpoint(Point.HANG)
    assert Failpoint.parse("crash:crashy") == Failpoint(Point.CRASH, "crashy")
    assert Failpoint.parse("nice:/tmp/x:y") == Failpoint(Point.NICE, "/tmp/x:y")  # a path may hold a colon
    assert Failpoint.parse("escape") == Failpoint(Point.ESCAPE, "/etc/hostname")
    assert Failpoint.parse("escape:/srv/secret") == Failpoint(Point.ESCAPE, "/srv/secret")
    assert Failpoint.parse("badreply:7") == Failpoint(Point.BADREPLY, "7")
    for wrong in ("slep:1", "sleep:soon", "sleep", "crash", "crash:", "nice:", "hang:5", "badreply:x", ":x", "SLEEP:1"):
        with pytest.raises(ValueError, match=VARIABLE):
            Failpoint.parse(wrong)


def test_the_variable_is_read_once_and_dropped_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VARIABLE, "hang")
    assert Failpoint.from_environ().point is Point.HANG and VARIABLE not in os.environ
    assert Failpoint.from_environ() == Failpoint()  # unset: nothing happens


def test_a_worker_with_a_mistyped_failpoint_stops_at_its_start_saying_why() -> None:
    """Before it reads its pipe (fd 999 does not exist): a typo fails its test instead of passing silently."""
    code = "import sys; sys.argv[1:] = ['w', '999']; from flipedit_previewd.worker.main import child_main; child_main()"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, VARIABLE: "sleeep:1"},
    )
    assert result.returncode != 0 and "unknown failpoint 'sleeep:1'" in result.stderr


def _job(frame: int, broken: frozenset[str] = frozenset(), speculative: bool = False) -> Job:
    return Job(1, frame, OutputSpec(64, 36), "r", broken, (), speculative)


def _timeline(source: str = "project") -> Timeline:
    clip = Clip(1, 1, "video", "/m/crashy.mp4", 0.0, 1000.0, 0.0, 1000.0)
    return Timeline(64, 36, 30.0, (Track(1, 0, True, (clip,)),), source, revision="r")


def test_crash_kills_only_on_a_matching_source_not_yet_a_placeholder_and_never_at_warm_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exits: list[int] = []
    monkeypatch.setattr(failpoints.os, "_exit", exits.append)
    crash = Failpoint.parse("crash:crashy")
    crash.before_render(_job(100), _timeline())  # frame 100 is past the clip: no layer
    crash.before_render(_job(5, frozenset({"/m/crashy.mp4"})), _timeline())  # drawn as a placeholder: not opened
    crash.before_render(_job(5), _timeline("warm-up"))
    Failpoint.parse("crash:other").before_render(_job(5), _timeline())
    assert exits == []
    crash.before_render(_job(5), _timeline())
    assert exits == [139]


def test_nice_records_the_kind_and_priority_of_each_render(tmp_path: Path) -> None:
    record = tmp_path / "kinds.txt"
    nice = Failpoint.parse(f"nice:{record}")
    nice.prepare()
    nice.before_render(_job(1), _timeline())
    nice.before_render(_job(2, speculative=True), _timeline())
    nice.before_render(_job(3), _timeline("warm-up"))
    priority = os.getpriority(os.PRIO_PROCESS, 0)
    assert record.read_text() == f"real {priority}\nahead {priority}\n"


def test_only_the_named_frame_gets_the_bad_reply_and_only_escape_tries_to_escape() -> None:
    bad = Failpoint.parse("badreply:7")
    assert bad.replaces_reply(_job(7)) and not bad.replaces_reply(_job(8))
    assert not Failpoint().replaces_reply(_job(7)) and Failpoint().after_confinement() == ()
    assert bad.after_confinement() == ()


def test_escape_reports_each_attempt(tmp_path: Path) -> None:
    """Unconfined here: the file opens (NOT refused); what matters is that each attempt is reported as data."""
    target = tmp_path / "secret"
    target.write_text("x")
    attempts = Failpoint.parse(f"escape:{target}").after_confinement()
    assert [a.what for a in attempts] == [f"open {target}", "connect 127.0.0.1:9", "exec /bin/sh"]
    assert attempts[0].refused is False and attempts[0].error == ""


def test_every_failpoint_is_documented_in_the_tests_docs() -> None:
    section = (ROOT / "docs/tests.md").read_text().partition("### Failpoints")[2]
    assert VARIABLE in section
    for point in Point:
        if point is not Point.NONE:
            assert re.search(rf"\| `{point.value}[:` ]", section), point


def test_no_setting_is_a_test_setting() -> None:
    """Fault injection is not configuration: nothing in --help, the man page, --print-config or the TOML."""
    assert not [s.name for s in SETTINGS if s.name.startswith("test") or "test only" in s.help.lower()]


def _shipped_files() -> list[Path]:
    files = [p for folder in ("systemd", "packaging") for p in (ROOT / folder).rglob("*") if p.is_file()]
    assert any(p.suffix == ".service" for p in files) and any(p.name == "rules" for p in files)
    return files


@pytest.mark.parametrize("path", _shipped_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_shipped_unit_or_package_file_sets_the_failpoint(path: Path) -> None:
    text = path.read_text(errors="replace")
    if path.suffix == ".catalog":  # the journal catalog explains sandbox_violation by the variable; it sets nothing
        assert f"{VARIABLE}=" not in text
    else:
        assert VARIABLE not in text
