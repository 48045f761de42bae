"""previewctl: the operator's tool for the preview daemon.

Each subcommand is a module (``cmd_*.py``) registered by one line in ``parser.COMMANDS``; the
environment (streams, tty, colour, variables) is injected (``context.Env``), so tests drive it
without a terminal; every exception goes through one funnel (``core.main``) to a documented exit
code and a one-line message that says what to do.

Conventions of the tools people know: ``-o text|json`` (alias ``--json``) on every
command, as kubectl's and gh's (``render`` and ``profile`` write their file with
``-O/--output-file``, ``-`` for stdout); with ``-o json`` stdout is JSON whatever
happens, an error included; global flags also after the subcommand; journalctl's time
formats; every argument checked by argparse (exit 3), a mistyped command or choice
answered with "did you mean".

Exit codes: 0 ok, 1 degraded/overloaded, a failed check or nothing found, 2 daemon unreachable
(or not answering in time), 3 usage error.

The modules: ``core`` (the funnel, ``main``), ``context`` (``Env``, ``CtlError``, the exit codes,
``Command``), ``parser`` (the argparse definition, ``build_parser``, the command table),
``arguments`` (shared argument types and flags), ``cmd_*`` (one per subcommand), and what they
share: ``healthview`` (the /health document for a person), ``journal_window`` (the journal flags),
``journal_read``, ``stats``, ``restarts`` (the journal), ``discovery``, ``verify`` (the daemon's
address and who holds it), ``system`` and ``running`` (facts of this machine and of the daemon's
process), ``words`` and ``safeout`` (presentation and escaping).
"""

from __future__ import annotations

from .core import default_env, main
from .parser import build_parser

__all__ = ["build_parser", "default_env", "main"]
