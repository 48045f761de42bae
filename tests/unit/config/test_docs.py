"""Man pages and completions come from the same argparse definitions and actually work."""

from __future__ import annotations

import subprocess

from tests.support.helpers import ROOT


def test_man_pages_render_and_completions_register(tmp_path: object) -> None:
    out = ROOT / "build"
    subprocess.run(["bash", str(ROOT / "scripts/docs.sh"), str(out)], check=True, capture_output=True)
    sections = ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "ENVIRONMENT", "FILES", "SEE ALSO"]
    for page, must, extra in (
        ("previewctl.1", "previewctl doctor", ["COMMANDS"]),
        ("flipedit-previewd.8", "--queue-size", ["SIGNALS"]),
    ):
        result = subprocess.run(
            ["man", "--warnings", "-l", str(out / "man" / page)],
            capture_output=True,
            text=True,
            env={"MANPAGER": "cat", "MANWIDTH": "100", "PATH": "/usr/bin:/bin"},
        )
        text = result.stdout.replace("\u2010", "-")
        flowing = " ".join(text.split())  # man justifies lines with extra spaces
        assert result.returncode == 0 and must in flowing and not result.stderr.strip(), result.stderr
        headings = [line for line in text.splitlines() if line and not line[0].isspace()][1:-1]
        assert [h for h in headings if h in sections] == sections, headings  # all of them, in man-pages(7)'s order
        assert all(h in headings for h in extra) and "COMMENTS" not in headings
        if extra == ["COMMANDS"]:
            assert headings.index("OPTIONS") < headings.index("COMMANDS") < headings.index("EXIT STATUS")
        assert "test-render-hook" not in text and "\\f" not in text and "None" not in text
        lint = subprocess.run(
            ["groff", "-man", "-ww", "-z", "-Tutf8", str(out / "man" / page)], capture_output=True, text=True
        )
        assert lint.returncode == 0 and not lint.stderr.strip(), lint.stderr  # no troff warnings
    for script, prog in (("previewctl.bash", "previewctl"), ("flipedit-previewd.bash", "flipedit-previewd")):
        result = subprocess.run(
            ["bash", "-c", f"source {out / 'completions' / script}; complete -p {prog}"], capture_output=True, text=True
        )
        assert result.returncode == 0 and prog in result.stdout
    zsh = (out / "completions" / "_previewctl").read_text()
    assert zsh.startswith("#compdef previewctl") and "doctor" in zsh
    fish = (out / "completions" / "previewctl.fish").read_text()  # the same script as 'previewctl completion fish'
    assert "complete -c previewctl" in fish and "timeline" in fish
