"""Fixture writers stay off the daemon's import path: the daemon only ever reads the editor's files."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import flipedit_previewd

NOT_THE_DAEMON = {"testing", "demo", "ctl"}  # the writers, the demo command, the operator's tool


def daemon_modules() -> list[str]:
    names = [info.name for info in pkgutil.iter_modules(flipedit_previewd.__path__)]
    return [f"flipedit_previewd.{name}" for name in sorted(names) if name not in NOT_THE_DAEMON]


def test_no_daemon_module_imports_the_fixture_writers() -> None:
    modules = daemon_modules()
    assert {"flipedit_previewd.service", "flipedit_previewd.server", "flipedit_previewd.workers",
            "flipedit_previewd.projectdb", "flipedit_previewd.__main__"} <= set(modules)
    code = (f"import importlib, json, sys\nfor name in {modules!r}:\n    importlib.import_module(name)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('flipedit_previewd'))))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert "flipedit_previewd.service" in loaded  # the probe did import the daemon
    assert "flipedit_previewd.testing" not in loaded and "flipedit_previewd.demo" not in loaded


def test_the_writers_are_not_in_the_reader() -> None:
    from flipedit_previewd import projectdb

    for name in ("create_project_db", "add_clip", "add_track", "set_clip_rect", "create_metadata_db"):
        assert not hasattr(projectdb, name), name
