"""Strict configuration (issue 26): a value of the wrong type is an error in the user's words naming
where it was written (file and line, variable, flag) and the key, never a silent conversion
(``workers = 2.5`` was 2, ``workers = "3"`` was 3) nor Python's own message (``invalid literal for
int() with base 10``); unknown keys, variables and flags get a "did you mean"; a canvas no frame can be
served at is refused at start; list syntax for text is one documented rule.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from flipedit_previewd.config.schema import ConfigError, build_parser, load

ROOT = Path(__file__).resolve().parents[3]
NOWHERE = Path("/nonexistent/u.toml")


def toml_error(tmp_path: Path, text: str) -> ConfigError:
    user = tmp_path / "previewd.toml"
    user.write_text(text)
    with pytest.raises(ConfigError) as info:
        load({}, {}, user, None)
    return info.value


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("workers = 2.5", "whole number"),
        ('workers = "3"', "without the quotes: workers = 3"),
        ("workers = true", "whole number"),
        ("workers = 1e9", "whole number"),
        ("queue_timeout = true", "number"),
        ('queue_timeout = "2"', "without the quotes"),
        ("fdstore = 1", "true/false"),
        ('demo = "yes"', "true/false"),
        ("project = 3", "string"),
        ('allowed_roots = "/a,/b"', "list"),
        ('queue_size = "x"', "not a string"),
    ],
)
def test_toml_types_are_checked_with_file_line_and_key(tmp_path: Path, line: str, words: str) -> None:
    error = toml_error(tmp_path, f"# previewd\njpeg_quality = 50\n\n{line}\n")
    text = str(error)
    key = line.split(" =")[0]
    assert f"{tmp_path / 'previewd.toml'} line 4: {key} = " in text and words in text, text
    assert (error.key, error.line, error.file) == (key, 4, str(tmp_path / "previewd.toml"))
    assert "invalid literal" not in text and "base 10" not in text and "could not convert" not in text


@pytest.mark.parametrize(
    ("raw", "ok"), [("3", 3), (" 4 ", 4), ("3.0", None), ("x", None), ("", None), ("true", None), ("0x3", None)]
)
def test_text_from_environment_and_flags_is_parsed_strictly(raw: str, ok: int | None) -> None:
    for how in ("env", "flag"):
        env = {"FLIPEDIT_PREVIEWD_WORKERS": raw} if how == "env" else {}
        cli = {"workers": raw} if how == "flag" else {}
        if ok is not None:
            assert load(cli, env, NOWHERE, None).workers == ok
            continue
        with pytest.raises(ConfigError) as info:
            load(cli, env, NOWHERE, None)
        text = str(info.value)
        assert ("FLIPEDIT_PREVIEWD_WORKERS" if how == "env" else "--workers") in text and "whole number" in text, text
        assert "invalid literal" not in text


def test_floats_from_text_are_numbers_only() -> None:
    assert load({}, {"FLIPEDIT_PREVIEWD_QUEUE_TIMEOUT": "1.5"}, NOWHERE, None).queue_timeout == 1.5
    assert load({}, {"FLIPEDIT_PREVIEWD_QUEUE_TIMEOUT": "2"}, NOWHERE, None).queue_timeout == 2.0
    for bad in ("nan", "inf", "1,5", "fast", "1_0"):
        with pytest.raises(ConfigError, match="number") as info:
            load({}, {"FLIPEDIT_PREVIEWD_QUEUE_TIMEOUT": bad}, NOWHERE, None)
        assert "could not convert" not in str(info.value)


def test_unknown_key_variable_and_flag_say_did_you_mean(tmp_path: Path) -> None:
    error = toml_error(tmp_path, "queue_size = 3\nwrokers = 2\n")
    assert "line 2" in str(error) and "'wrokers'" in str(error) and "did you mean workers?" in str(error)
    with pytest.raises(ConfigError, match="did you mean FLIPEDIT_PREVIEWD_WORKERS"):
        load({}, {"FLIPEDIT_PREVIEWD_WROKERS": "2"}, NOWHERE, None)
    with pytest.raises(ConfigError, match="did you mean --workers"):
        build_parser().parse_args(["--wrokers", "3"])


def test_a_mistyped_flag_is_one_short_line_with_exit_2() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIPEDIT_PREVIEWD_")}
    result = subprocess.run(
        [str(ROOT / ".venv/bin/flipedit-previewd"), "--wrokers", "3"],
        capture_output=True,
        text=True,
        env={**env, "XDG_CONFIG_HOME": "/nonexistent"},
        timeout=30,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "did you mean --workers?" in lines[0] and "usage:" not in result.stderr, result.stderr


@pytest.mark.parametrize("values", [{"canvas_width": "1000000000"}, {"canvas_height": "0"}, {"canvas_width": "16385"}])
def test_canvas_sides_are_bounded(values: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="between 1 and 16384"):
        load(values, {}, NOWHERE, None)


def test_a_canvas_larger_than_max_output_pixels_is_refused_naming_both(tmp_path: Path) -> None:
    error = toml_error(tmp_path, "canvas_width = 8000\ncanvas_height = 8000\n")
    assert "max_output_pixels" in str(error) and "canvas_width" in str(error) and str(tmp_path) in str(error)
    user = tmp_path / "ok.toml"
    user.write_text("canvas_width = 8000\ncanvas_height = 8000\nmax_output_pixels = 64000000\n")
    assert load({}, {}, user, None).canvas_width == 8000


@pytest.mark.parametrize(
    ("raw", "roots"),
    [
        ("/a,/b", ("/a", "/b")),
        ("/a, /my media ,", ("/a", "/my media")),
        (r"/odd\,name,/b", ("/odd,name", "/b")),
        (r"/back\\slash", ("/back\\slash",)),
    ],
)
def test_list_syntax_for_environment_and_flags(raw: str, roots: tuple[str, ...]) -> None:
    assert load({}, {"FLIPEDIT_PREVIEWD_ALLOWED_ROOTS": raw}, NOWHERE, None).allowed_roots == roots
    assert load(vars(build_parser().parse_args(["--allowed-roots", raw])), {}, NOWHERE, None).allowed_roots == roots
    # a repeated flag adds items; TOML arrays are taken as written (no comma splitting inside an item)
    assert load(
        vars(build_parser().parse_args(["--allowed-roots", raw, "--allowed-roots", "/c"])), {}, NOWHERE, None
    ).allowed_roots == (*roots, "/c")


def test_toml_array_items_are_not_split(tmp_path: Path) -> None:
    user = tmp_path / "previewd.toml"
    user.write_text('allowed_roots = ["/x,y", "/z"]\n')
    assert load({}, {}, user, None).allowed_roots == ("/x,y", "/z")


def test_the_list_syntax_is_in_help() -> None:
    text = " ".join(build_parser().format_help().split())
    assert "separate items with commas" in text and "\\," in text


@pytest.mark.parametrize(
    "line", ["workers = [{ a = 1 }]", "workers = 1979-05-27", "[workers]\na = 1", "allowed_roots = [1, 2]"]
)
def test_odd_toml_values_are_named_not_crashed_on(tmp_path: Path, line: str) -> None:
    error = toml_error(tmp_path, f"{line}\n")
    assert str(error).startswith(f"{tmp_path / 'previewd.toml'} line 1: ") and error.key == line.split()[0].strip(
        "[]"
    ), str(error)
