"""ctl/core.py: the funnel from whatever a command raises to one exit code and one line, with a stand-in command."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from flipedit_previewd.ctl import core
from flipedit_previewd.ctl.context import EXIT_PROBLEM, EXIT_UNREACHABLE, Command, CtlError, Env


def run_with(
    monkeypatch: pytest.MonkeyPatch, name: str, behaviour: BaseException | None, argv: list[str]
) -> tuple[int, str, str]:
    """Run previewctl with the command ``name`` replaced by one that raises ``behaviour`` (or prints and returns 0)."""

    def run(args: argparse.Namespace, env: Env) -> int:
        if behaviour is not None:
            raise behaviour
        env.out("done")
        return 0

    commands = tuple(Command(c.name, c.help, c.add_arguments, run) if c.name == name else c for c in core.COMMANDS)
    monkeypatch.setattr(core, "COMMANDS", commands)
    out, err = io.StringIO(), io.StringIO()
    code = core.main(argv, Env(out, err, {}, False, False))
    return code, out.getvalue(), err.getvalue()


def test_an_unexpected_exception_is_one_line_and_exit_1_never_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    # Catches a traceback reaching the operator, or a message with the terminal's control characters in it.
    code, out, err = run_with(monkeypatch, "health", RuntimeError("bad \x1b[31mthing"), ["health"])
    assert code == EXIT_PROBLEM
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err and "\x1b" not in err
    assert err.startswith("previewctl: unexpected error: RuntimeError: bad ")


def test_a_ctl_error_with_json_output_leaves_a_json_document_on_stdout(monkeypatch: pytest.MonkeyPatch) -> None:
    # Catches -o json leaving stdout empty (or half text) when a command fails: scripts parse stdout.
    code, out, err = run_with(
        monkeypatch, "status", CtlError("it broke", "do this", EXIT_UNREACHABLE), ["status", "-o", "json"]
    )
    assert code == EXIT_UNREACHABLE
    assert json.loads(out) == {"error": "it broke", "hint": "do this", "exit_code": EXIT_UNREACHABLE}
    assert err == "previewctl: it broke; do this\n"


def test_a_command_without_output_flag_fails_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    # completion has no -o: the funnel must not assume every command's namespace has "output".
    code, out, err = run_with(monkeypatch, "completion", CtlError("no shtab", "install it"), ["completion", "bash"])
    assert (code, out, err) == (EXIT_PROBLEM, "", "previewctl: no shtab; install it\n")


@pytest.mark.parametrize("interruption", [KeyboardInterrupt(), BrokenPipeError()])
def test_ctrl_c_and_a_closed_pipe_end_quietly_with_0(
    monkeypatch: pytest.MonkeyPatch, interruption: BaseException
) -> None:
    # Catches Ctrl-C during a command (or `previewctl logs | head`) printing a traceback or failing.
    assert run_with(monkeypatch, "logs", interruption, ["logs"]) == (0, "", "")


def test_the_command_named_is_the_one_run(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_with(monkeypatch, "doctor", None, ["doctor"]) == (0, "done\n", "")
