"""ctl/system.py (facts of this machine) apart from ctl/words.py (presentation)."""

from __future__ import annotations

import ast
from pathlib import Path

from flipedit_previewd.ctl import words
from flipedit_previewd.ctl.system import pid1


def test_pid1_names_the_init_or_says_it_cannot(tmp_path: Path) -> None:
    # Catches status/doctor failing where /proc/1/comm is unreadable or empty (a sandbox, another PID namespace).
    comm = tmp_path / "comm"
    assert pid1(str(comm)) == "?"
    comm.write_text("")
    assert pid1(str(comm)) == "?"
    comm.write_text("systemd\n")
    assert pid1(str(comm)) == "systemd"


def test_words_is_presentation_only() -> None:
    # Catches a system read (a file, a process, the environment) creeping back beside the colours: those are
    # system.py's, journal_read.py's or running.py's, where they can be faked by a path or an environment.
    tree = ast.parse(Path(words.__file__).read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= {"__future__", "re", "collections", "typing"}
    calls = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert "open" not in calls
