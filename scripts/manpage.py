"""Write a man page from one of the project's argparse parsers.

Works with argparse-manpage 4.x (PyPI) and 1.2 (Debian 12's python3-argparse-manpage, whose
command line cannot set the section): python3 scripts/manpage.py MODULE:FUNCTION PROG SECTION OUTPUT
"""

from __future__ import annotations

import importlib
import sys

DESCRIPTIONS = {"previewctl": "inspect and troubleshoot the FlipEdit preview daemon",
                "flipedit-previewd": "the FlipEdit preview daemon"}


def main() -> None:
    target, prog, section, output = sys.argv[1:5]
    module, _, function = target.partition(":")
    sys.path.insert(0, ".")
    parser = getattr(importlib.import_module(module), function)()
    parser.prog = prog
    version = importlib.import_module("flipedit_previewd").__version__
    try:
        from argparse_manpage.manpage import Manpage
    except ImportError:  # argparse-manpage 1.2
        from build_manpages.manpage import Manpage as OldManpage

        page = str(OldManpage(parser)).replace(f'.TH {prog} "1" Manual',
                                               f'.TH {prog.upper()} "{section}" "" "flipedit-previewd {version}" "FlipEdit preview"')
        page = page.replace(".SH NAME\n" + prog + "\n", f".SH NAME\n{prog} \\- {DESCRIPTIONS[prog]}\n", 1)
    else:
        page = str(Manpage(parser, {"manual_section": section, "manual_title": "FlipEdit preview", "version": version,
                                    "description": DESCRIPTIONS[prog], "project_name": "flipedit-previewd", "prog": prog}))
    # A text line that starts with an apostrophe is a control line to troff: escape it.
    page = "\n".join("\\&" + line if line.startswith("'") else line for line in page.splitlines())
    with open(output, "w") as handle:
        handle.write(page if page.endswith("\n") else page + "\n")


if __name__ == "__main__":
    main()
