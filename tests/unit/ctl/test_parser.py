"""ctl/parser.py and ctl/arguments.py: the subcommand table and the argument types every command shares."""

from __future__ import annotations

import argparse
import io
import pkgutil
import re

import pytest

import flipedit_previewd.ctl as ctl
from flipedit_previewd.ctl import main
from flipedit_previewd.ctl.arguments import number
from flipedit_previewd.ctl.context import CtlError, Env
from flipedit_previewd.ctl.parser import COMMANDS, build_parser


def test_every_cmd_module_is_registered_once_under_its_own_name() -> None:
    # Catches a subcommand module written without its line in COMMANDS: the command would be missing from
    # the CLI, the man page and the completions, with nothing else failing. And two modules claiming one name.
    modules = sorted(m.name for m in pkgutil.iter_modules(ctl.__path__) if m.name.startswith("cmd_"))
    registered = sorted(f"cmd_{command.name}" for command in COMMANDS)
    assert registered == modules
    assert len({command.name for command in COMMANDS}) == len(COMMANDS)


def test_the_parser_offers_the_table_in_order_with_each_help() -> None:
    # Catches build_parser drifting from the table (a command skipped, reordered, or its help not the table's).
    with pytest.raises(CtlError) as refused:
        build_parser().parse_args(["no-such-command"])
    offered = re.findall(r"'([^']*)'", str(refused.value).split("choose from", 1)[1])
    assert offered == [command.name for command in COMMANDS]
    for command in COMMANDS:
        out = io.StringIO()
        assert main([command.name, "--help"], Env(out, io.StringIO(), {}, False, False)) == 0
        assert " ".join(command.help.split()) in " ".join(out.getvalue().split())


def test_every_command_can_reach_the_parser_for_completion() -> None:
    # Catches the completion command losing the parser it completes (handed over by build_parser, not imported).
    args = build_parser().parse_args(["completion", "bash"])
    assert args.make_parser is build_parser


@pytest.mark.parametrize(
    ("kind", "bounds", "text", "message"),
    [
        (float, {"above": 0}, "0", "must be above 0, not 0"),
        (float, {"above": 0}, "nan", "'nan' is not a finite number"),  # nan compares false with every bound
        (float, {"low": 0}, "inf", "'inf' is not a finite number"),
        (float, {"high": 10}, "-inf", "'-inf' is not a finite number"),
        (int, {"low": 1}, "0", "must be at least 1, not 0"),
        (int, {"high": 95}, "96", "must be at most 95, not 96"),
        (int, {}, "1.5", "'1.5' is not an integer"),
        (float, {}, "fast", "'fast' is not a number"),
    ],
)
def test_numbers_out_of_range_or_not_finite_are_refused(
    kind: type, bounds: dict[str, float], text: str, message: str
) -> None:
    # Catches a NaN or an infinity passing a range check (--interval nan would spin, --timeout inf never end).
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        number(kind, **bounds)(text)


def test_numbers_in_range_are_their_type_and_named_for_argparse() -> None:
    assert number(int, low=1, high=95)("95") == 95
    assert number(float, above=0)("0.1") == 0.1
    assert number(int).__name__ == "int"  # argparse's "invalid int value" names this
