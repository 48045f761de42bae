"""The daemon's main process routes requests and never renders: it must not load PyAV or Pillow
(their libraries cost idle memory in every process that maps them, and their import is on the
cold-start path before the workers are spawned; bench/footprint.py measures both)."""

from __future__ import annotations

import subprocess
import sys


def test_main_process_imports_neither_pyav_nor_pillow() -> None:
    code = ("import sys; import flipedit_previewd.__main__, flipedit_previewd.server, flipedit_previewd.workers; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'av', 'PIL', 'numpy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
