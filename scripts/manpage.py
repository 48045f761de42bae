"""Write a man page from one of the project's argparse parsers.

python3 scripts/manpage.py MODULE:FUNCTION PROG SECTION OUTPUT

The options come from the parser the program uses (so they cannot drift); the sections a man
page is expected to have (man-pages(7): NAME, SYNOPSIS, DESCRIPTION, OPTIONS, EXIT STATUS,
ENVIRONMENT, FILES, SEE ALSO) come from PAGES below. Options whose help is SUPPRESS (test-only)
are left out. Written directly as troff, not through argparse-manpage, which puts the exit codes
under COMMENTS and the global options after the subcommands.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import sys

PAGES: dict[str, dict[str, object]] = {
    "previewctl": {
        "name": "inspect and troubleshoot the FlipEdit preview daemon",
        "synopsis": ["[\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR]"],
        "description": [
            "previewctl finds the daemon by itself (the unix socket in $XDG_RUNTIME_DIR, then "
            "http://127.0.0.1:8081), shows its health, the systemd unit's state, a live view, its journal "
            "entries and statistics computed from them, runs the troubleshooting checklist, fetches a frame "
            "and records a flame graph of its processes.",
            "Conventions: \\fB-o json\\fR (alias \\fB--json\\fR) on every command that prints data; "
            "\\fBrender\\fR and \\fBprofile\\fR write a file, so there \\fB-o\\fR names the file and "
            "\\fB-o -\\fR is standard output. Global options may also follow the command. Times take "
            'journalctl\'s forms ("1 hour ago", "today", "2026-11-28 10:00", "@1700000000"). '
            "Human output is coloured on a terminal only, never with NO_COLOR or when piped. A daemon "
            "started by hand (no systemd manager) is shown by its health; systemd checks are then "
            "marked not applicable.",
        ],
        "exit": [
            ("0", "ok"),
            ("1", "degraded or overloaded, a failed check, or no journal or no entries found"),
            ("2", "the daemon is unreachable"),
            ("3", "usage error (a bad argument), with a one-line message"),
        ],
        "environment": [
            ("NO_COLOR", "when set and not empty, no colour (https://no-color.org)"),
            ("XDG_RUNTIME_DIR", "where the daemon's unix socket is looked for (flipedit-preview.sock)"),
            ("TERM", "dumb turns colour off"),
        ],
        "files": [
            ("$XDG_RUNTIME_DIR/flipedit-preview.sock", "the user daemon's socket, tried first"),
            ("/run/flipedit-preview/flipedit-preview.sock", "the system daemon's socket"),
            (
                "/var/log/journal, /run/log/journal",
                "where logs, stats and doctor read the journal (or --directory/--file)",
            ),
        ],
        "see_also": ["flipedit-previewd(8)", "systemctl(1)", "journalctl(1)", "systemd.socket(5)", "py-spy(1)"],
    },
    "flipedit-previewd": {
        "name": "the FlipEdit preview daemon",
        "synopsis": ["[\\fIOPTIONS\\fR]"],
        "description": [
            "Composites the FlipEdit editor's timeline at a frame and serves it as a JPEG over HTTP. Under "
            "systemd it adopts the sockets of flipedit-preview.socket and reports READY, STATUS, WATCHDOG, "
            "RELOADING and STOPPING; without them it listens on --listen, or on the editor's 127.0.0.1:8081, "
            "and says so at start. It serves --project, else the built-in demo with --demo, else the most "
            "recently modified project of the editor's metadata database, and says which and why.",
            "Every option is also a key of previewd.toml and an environment variable FLIPEDIT_PREVIEWD_<KEY>. "
            "Precedence: command line, environment, user file, system file, default. --print-config writes "
            "the effective configuration as TOML (each value's source in a comment) that can be saved as "
            "previewd.toml.",
        ],
        "exit": [
            ("0", "stopped cleanly"),
            ("1", "any other failure"),
            (
                "2",
                "configuration error: a bad value, an unknown key or FLIPEDIT_PREVIEWD_ variable, a malformed --listen "
                "address; "
                "also a bad command-line option",
            ),
            ("3", "socket error: an address that cannot be bound, or a socket from systemd that cannot be used"),
        ],
        "signals": [
            (
                "SIGHUP",
                "re-read the configuration and the timeline (systemctl reload); settings marked 'restart to change' in "
                "OPTIONS keep their running value until a restart (/health restart_pending names them)",
            ),
            ("SIGTERM, SIGINT", "stop: new renders get 503, queued and running ones finish within drain_timeout"),
        ],
        "environment": [
            (
                "FLIPEDIT_PREVIEWD_<KEY>",
                "any setting, e.g. FLIPEDIT_PREVIEWD_WORKERS=4 (digits only for a whole number); a list separated by "
                "commas, e.g. FLIPEDIT_PREVIEWD_ALLOWED_ROOTS=/srv/media,/home/me/Videos, with \\, for a comma inside "
                "an item; an unknown one is an error",
            ),
            ("LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES", "sockets passed by systemd (sd_listen_fds(3))"),
            ("NOTIFY_SOCKET, WATCHDOG_USEC", "systemd's notification socket and watchdog interval (sd_notify(3))"),
            ("XDG_CONFIG_HOME", "where the user configuration file is looked for"),
            ("XDG_DATA_HOME", "where --demo generates its project (default ~/.local/share)"),
        ],
        "files": [
            (
                "$XDG_CONFIG_HOME/flipedit-preview/previewd.toml",
                "the user configuration (~/.config when XDG_CONFIG_HOME is unset)",
            ),
            ("/etc/flipedit-preview/previewd.toml", "the system configuration"),
            ("$XDG_DATA_HOME/flipedit-preview/demo/", "the demo project of --demo and make demo"),
            ("/usr/lib/systemd/user/flipedit-preview.socket, flipedit-preview.service", "the user units"),
            (
                "/usr/lib/systemd/system/flipedit-preview.socket, flipedit-preview.service",
                "the system-wide units (disabled)",
            ),
            ("$XDG_RUNTIME_DIR/flipedit-preview.sock", "the user daemon's unix socket (made by the socket unit)"),
            (
                "/usr/lib/systemd/catalog/flipedit-previewd.catalog",
                "explanations of its journal entries (journalctl -x)",
            ),
        ],
        "see_also": [
            "previewctl(1)",
            "systemctl(1)",
            "journalctl(1)",
            "systemd.socket(5)",
            "systemd.service(5)",
            "sd_notify(3)",
        ],
    },
}


def esc(text: str) -> str:
    """Text for troff: backslashes, hyphens of options, and lines that would start with a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n"))


def raw(text: str) -> str:
    """Text that already carries troff font escapes (\\fI...\\fR): only hyphens escaped."""
    return text.replace("-", "\\-")


def option_lines(parser: argparse.ArgumentParser, skip: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    out: list[str] = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, (argparse._SubParsersAction, argparse._HelpAction)):
            continue
        if set(action.option_strings) & skip:
            continue
        if action.option_strings:
            if action.nargs == 0:
                metavar = ""
            elif action.metavar:
                metavar = str(action.metavar)
            elif action.choices:
                metavar = "{" + ",".join(map(str, action.choices)) + "}"
            else:
                metavar = action.dest.upper()
            names = ", ".join(f"\\fB{esc(o)}\\fR" for o in action.option_strings)
            head = names + (f" \\fI{esc(metavar)}\\fR" if metavar else "")
        else:
            head = f"\\fI{esc(str(action.metavar or action.dest))}\\fR"
        out += [".TP", head, esc(action.help or "")]
    return out


def definitions(items: list[tuple[str, str]]) -> list[str]:
    out: list[str] = []
    for term, meaning in items:
        out += [".TP", f"\\fB{esc(term)}\\fR", esc(meaning)]
    return out


def page(parser: argparse.ArgumentParser, prog: str, section: str, version: str) -> str:
    info = PAGES[prog]
    epoch = os.environ.get("SOURCE_DATE_EPOCH")  # reproducible package builds
    date = (
        datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).date() if epoch else datetime.date.today()
    ).isoformat()
    lines = [
        f'.TH {prog.upper()} {section} "{date}" "flipedit-previewd {version}" "FlipEdit preview"',
        ".SH NAME",
        f"{esc(prog)} \\- {esc(str(info['name']))}",
        ".SH SYNOPSIS",
    ]
    for form in info["synopsis"]:  # type: ignore[attr-defined]
        lines += [f"\\fB{esc(prog)}\\fR {raw(form)}", ".br"]
    lines[-1:] = []
    lines.append(".SH DESCRIPTION")
    for number, paragraph in enumerate(info["description"]):  # type: ignore[arg-type]
        if number:
            lines.append(".PP")
        lines.append(raw(paragraph))
    lines += [".SH OPTIONS", *option_lines(parser)]
    lines += [".TP", "\\fB\\-h\\fR, \\fB\\-\\-help\\fR", "show the help and exit"]
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    if sub is not None:
        helps = {a.dest: a.help for a in sub._choices_actions}
        globals_ = {o for a in parser._actions for o in a.option_strings if o not in ("-h", "--help")}
        lines.append(".SH COMMANDS")
        for name, command in sub.choices.items():
            usage = command.format_usage().split(":", 1)[1].strip()
            lines += [f".SS {esc(name)}", esc(helps.get(name) or ""), ".PP", f"\\fB{esc(' '.join(usage.split()))}\\fR"]
            lines += option_lines(command, skip=globals_)
            lines.append(".PP")
            lines.append("Also the global options above.")
    lines += [".SH EXIT STATUS", *definitions(info["exit"])]  # type: ignore[arg-type]
    if "signals" in info:
        lines += [".SH SIGNALS", *definitions(info["signals"])]  # type: ignore[arg-type]
    lines += [".SH ENVIRONMENT", *definitions(info["environment"])]  # type: ignore[arg-type]
    lines += [".SH FILES", *definitions(info["files"])]  # type: ignore[arg-type]
    see = info["see_also"]
    lines += [".SH SEE ALSO", ", ".join(f"\\fB{esc(ref.split('(')[0])}\\fR({ref.split('(')[1]}" for ref in see)]  # type: ignore[attr-defined]
    return "\n".join(lines) + "\n"


def main() -> None:
    target, prog, section, output = sys.argv[1:5]
    module, _, function = target.partition(":")
    sys.path.insert(0, ".")
    parser = getattr(importlib.import_module(module), function)()
    parser.prog = prog
    version = importlib.import_module("flipedit_previewd").__version__
    with open(output, "w") as handle:
        handle.write(page(parser, prog, section, version))


if __name__ == "__main__":
    main()
