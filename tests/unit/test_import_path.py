"""Fixture writers stay off the daemon's import path: the daemon only ever reads the editor's files."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import flipedit_previewd

NOT_THE_DAEMON = ("flipedit_previewd.demo", "flipedit_previewd.ctl")  # the writers and the demo, the operator's tool


def daemon_modules() -> list[str]:
    names = [info.name for info in pkgutil.walk_packages(flipedit_previewd.__path__, "flipedit_previewd.")]
    return [name for name in sorted(names) if not name.startswith(NOT_THE_DAEMON)]


def test_no_daemon_module_imports_the_fixture_writers() -> None:
    modules = daemon_modules()
    assert {
        "flipedit_previewd.app.service",
        "flipedit_previewd.http.server",
        "flipedit_previewd.render.pool",
        "flipedit_previewd.timeline.projectdb",
        "flipedit_previewd.__main__",
    } <= set(modules)
    code = (
        f"import importlib, json, sys\nfor name in {modules!r}:\n    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('flipedit_previewd'))))"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert "flipedit_previewd.app.service" in loaded  # the probe did import the daemon
    assert "flipedit_previewd.demo.fixtures" not in loaded and "flipedit_previewd.demo.project" not in loaded


def test_the_writers_are_not_in_the_reader() -> None:
    from flipedit_previewd.timeline import projectdb

    for name in ("create_project_db", "add_clip", "add_track", "set_clip_rect", "create_metadata_db"):
        assert not hasattr(projectdb, name), name
