"""Regenerate the configuration table in docs/configuration.md from the schema: ``python -m "
"flipedit_previewd.config.docs``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from flipedit_previewd.config.schema import markdown_table

BEGIN, END = "<!-- config-table:begin -->", "<!-- config-table:end -->"


def update_readme(path: Path) -> bool:
    text = path.read_text()
    table = f"{BEGIN}\n{markdown_table()}\n{END}"  # a function, not a template: the table has backslashes (list syntax)
    new = re.sub(f"{re.escape(BEGIN)}.*?{re.escape(END)}", lambda _: table, text, flags=re.S)
    if new != text:
        path.write_text(new)
        return True
    return False


if __name__ == "__main__":
    readme = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/configuration.md")
    print("updated" if update_readme(readme) else "up to date", readme)
