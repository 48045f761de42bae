"""previewctl proxies: what ``build --project`` sends (the path absolute, quoted, never resolved), what it refuses
before sending anything, and what ``build`` prints from the daemon's answer."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from flipedit_previewd.app.routes import project_param
from flipedit_previewd.ctl import main
from flipedit_previewd.ctl.cmd_proxies import build_lines, build_target
from flipedit_previewd.ctl.context import Env
from flipedit_previewd.ctl.parser import build_parser

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens; a request made would fail with exit 2


def target(*argv: str) -> str:
    return build_target(build_parser().parse_args(["proxies", "build", *argv]))


def test_build_without_project_targets_the_served_timeline_as_before() -> None:
    assert target() == "/proxies"
    assert target("--all") == "/proxies?all=1"


def test_project_is_sent_absolute_and_unresolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    sent = target("--project", "link/p.sqlite", "--all")
    # relative to the caller's directory (the daemon's is another), the symlinked folder kept for the daemon to judge
    assert sent.startswith("/proxies?all=1&project=")
    assert project_param(sent) == str(tmp_path / "link" / "p.sqlite")


@pytest.mark.parametrize("name", ["a b.sqlite", "x?y=1&project=/etc/passwd#z.sqlite", "100%.sqlite", "é.sqlite"])
def test_any_file_name_reaches_the_daemon_as_it_was_typed(tmp_path: Path, name: str) -> None:
    path = str(tmp_path / name)
    sent = target("--project", path)
    assert project_param(sent) == path  # one project, the whole name: nothing of it read as another parameter


def test_a_project_named_twice_or_in_bad_bytes_is_the_clients_mistake() -> None:
    from flipedit_previewd.common.errors import BadRequest

    with pytest.raises(BadRequest, match="more than once"):
        project_param("/proxies?project=/a&project=/b")
    with pytest.raises(BadRequest, match="not usable"):
        project_param("/proxies?project=/a%ff.sqlite")  # not UTF-8: never replaced by U+FFFD and looked for
    assert project_param("/proxies?all=1") is None


@pytest.mark.parametrize("action", ["list", "clear"])
def test_project_only_goes_with_build(action: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main(["--url", UNREACHABLE, "proxies", action, "--project", "/p.sqlite"], Env(out, err, {}, False, False))
    assert code == 3 and "--project is for 'proxies build'" in err.getvalue() and out.getvalue() == ""


def test_an_empty_project_is_a_usage_error_not_the_served_timeline() -> None:
    err = io.StringIO()
    code = main(["--url", UNREACHABLE, "proxies", "build", "--project", ""], Env(io.StringIO(), err, {}, False, False))
    assert code == 3 and "--project needs a FILE" in err.getvalue()


def test_build_prints_the_project_and_each_source_queued() -> None:
    answer = {"project": "/m/other.sqlite", "queued": 2, "sources": ["/m/a.mp4", "/m/b.mov"]}
    lines = build_lines(answer, "0 made, 2 queued")
    assert lines == [
        "2 source(s) queued for project /m/other.sqlite; proxies: 0 made, 2 queued",
        "  /m/a.mp4",
        "  /m/b.mov",
    ]


def test_build_for_the_served_timeline_prints_as_before() -> None:
    assert build_lines({"queued": 1}, "1 queued") == ["1 source(s) queued; proxies: 1 queued"]


def test_names_from_the_daemon_are_escaped_and_bounded() -> None:
    hostile = "/m/\x1b[2J\nfake line.mp4"
    lines = build_lines({"project": "/m/\x1b]0;title\x07.sqlite", "queued": 1, "sources": [hostile] * 5000}, "s")
    assert len(lines) == 1 + 1000 and all("\x1b" not in line and "\n" not in line for line in lines), lines[:2]
    assert os.sep in lines[1]
