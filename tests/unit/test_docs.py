"""Man pages and completions come from the same argparse definitions and actually work."""

from __future__ import annotations

import subprocess

from helpers import ROOT


def test_man_pages_render_and_completions_register(tmp_path: object) -> None:
    out = ROOT / "build"
    subprocess.run(["bash", str(ROOT / "scripts/docs.sh"), str(out)], check=True, capture_output=True)
    for page, must in (("previewctl.1", "previewctl doctor"), ("flipedit-previewd.8", "--queue-size")):
        result = subprocess.run(["man", "-l", str(out / "man" / page)], capture_output=True, text=True,
                                env={"MANPAGER": "cat", "MANWIDTH": "100", "PATH": "/usr/bin:/bin"})
        assert result.returncode == 0 and must in result.stdout.replace("\u2010", "-") and not result.stderr.strip(), result.stderr
    for script, prog in (("previewctl.bash", "previewctl"), ("flipedit-previewd.bash", "flipedit-previewd")):
        result = subprocess.run(["bash", "-c", f"source {out / 'completions' / script}; complete -p {prog}"], capture_output=True, text=True)
        assert result.returncode == 0 and prog in result.stdout
    zsh = (out / "completions" / "_previewctl").read_text()
    assert zsh.startswith("#compdef previewctl") and "doctor" in zsh
