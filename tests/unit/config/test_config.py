from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from flipedit_previewd.config.schema import SETTINGS, ConfigError, build_parser, load, markdown_table

ROOT = Path(__file__).resolve().parents[3]


def test_precedence_cli_env_user_system_default(tmp_path: Path) -> None:
    system = tmp_path / "system.toml"
    user = tmp_path / "user.toml"
    system.write_text("workers = 3\nqueue_size = 7\njpeg_quality = 50\nframe_rate = 24.0\n")
    user.write_text("queue_size = 9\njpeg_quality = 60\n")
    env = {"FLIPEDIT_PREVIEWD_JPEG_QUALITY": "70", "FLIPEDIT_PREVIEWD_KEEPALIVE_TIMEOUT": "30"}
    cli = vars(build_parser().parse_args(["--keepalive-timeout", "40"]))
    config = load(cli, env, user, system)
    assert config.workers == 3 and config.sources["workers"].startswith("system file")
    assert config.queue_size == 9 and config.sources["queue_size"].startswith("user file")
    assert config.jpeg_quality == 70 and "FLIPEDIT_PREVIEWD_JPEG_QUALITY" in config.sources["jpeg_quality"]
    assert config.keepalive_timeout == 40.0 and config.sources["keepalive_timeout"] == "command line"
    assert config.canvas_width == 1280 and config.sources["canvas_width"] == "default"
    assert config.frame_rate == 24.0


@pytest.mark.parametrize("source", ["system", "user", "env", "cli"])
def test_bad_value_names_key_value_and_source(tmp_path: Path, source: str) -> None:
    system, user = tmp_path / "s.toml", tmp_path / "u.toml"
    env: dict[str, str] = {}
    cli: dict[str, object] = {}
    if source == "system":
        system.write_text("workers = 0\n")
    elif source == "user":
        user.write_text('workers = "many"\n')
    elif source == "env":
        env["FLIPEDIT_PREVIEWD_WORKERS"] = "-2"
    else:
        cli["workers"] = "two"
    with pytest.raises(ConfigError) as info:
        load(cli, env, user, system)
    text = str(info.value)
    assert "workers" in text
    expected_source = {
        "system": str(system),
        "user": str(user),
        "env": "FLIPEDIT_PREVIEWD_WORKERS",
        "cli": "command line",
    }[source]
    assert expected_source in text


def test_unknown_toml_key_is_an_error(tmp_path: Path) -> None:
    user = tmp_path / "u.toml"
    user.write_text("wrokers = 2\n")
    with pytest.raises(ConfigError, match="wrokers"):
        load({}, {}, user, None)


def readme_config_table() -> dict[str, dict[str, str]]:
    """The README's configuration table, parsed from its text: {key: {"flag", "env", column name: cell}}."""
    lines = (ROOT / "docs/configuration.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| key / flag / env |"))
    header = [cell.strip() for cell in lines[start].strip().strip("|").split("|")]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("| `"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        key, flag, env = re.findall(r"`([^`]+)`", cells[0])
        rows[key] = {"flag": flag, "env": env, **dict(zip(header[1:], cells[1:], strict=False))}
    return rows


# Facts stated here, not generated: the editor's contract and the old server's knobs (README prose).
STATED_DEFAULTS = {
    "workers": ("int", "2"),
    "queue_size": ("int", "20"),
    "queue_timeout": ("float", "2.5"),
    "max_connections": ("int", "1024"),
    "keepalive_timeout": ("float", "20.0"),
    "jpeg_quality": ("int", "85"),
    "canvas_width": ("int", "1280"),
    "canvas_height": ("int", "720"),
    "frame_rate": ("float", "30.0"),
    "allowed_roots": ("list", "[]"),
    "fdstore": ("bool", "True"),
    "project": ("str", "''"),
}
STATED_NAMES = {
    "workers": ("--workers", "FLIPEDIT_PREVIEWD_WORKERS"),
    "queue_size": ("--queue-size", "FLIPEDIT_PREVIEWD_QUEUE_SIZE"),
    "keepalive_timeout": ("--keepalive-timeout", "FLIPEDIT_PREVIEWD_KEEPALIVE_TIMEOUT"),
    "allowed_roots": ("--allowed-roots", "FLIPEDIT_PREVIEWD_ALLOWED_ROOTS"),
}


def sample(key: str, type_name: str, default: str) -> tuple[str, object]:
    """A valid value other than the default, as text and as --print-config shows it (TOML)."""
    if type_name == "int":
        return ("70", 70) if key == "max_output_pixels" else ("7", 7)  # a 7 x 7 canvas must fit in max_output_pixels
    if type_name == "float":
        return ("9.5", 9.5) if key == "hang_threshold" else ("7.5", 7.5)  # render_budget stays below hang_threshold
    if type_name == "bool":
        return ("false", False) if default == "`True`" else ("true", True)
    if type_name == "list":
        return ("127.0.0.1:9", ["127.0.0.1:9"]) if key == "listen" else ("/srv/x", ["/srv/x"])
    return ("/srv/y", "/srv/y")


def print_config(args: list[str], env: dict[str, str], tmp_path: Path) -> tuple[dict[str, object], dict[str, str]]:
    """The real CLI's --print-config: {key: value} (TOML) and {key: source} (the comments)."""
    import tomllib

    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLIPEDIT_PREVIEWD_")}
    result = subprocess.run(
        [str(ROOT / ".venv/bin/flipedit-previewd"), "--print-config", *args],
        env={**clean, "XDG_CONFIG_HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    sources = {
        line.split("=")[0].strip(): line.rsplit("# ", 1)[1]
        for line in result.stdout.splitlines()
        if not line.startswith("#")
    }
    return tomllib.loads(result.stdout), sources


def test_readme_table_states_the_documented_defaults_flags_and_env() -> None:
    rows = readme_config_table()
    assert len(rows) >= 30
    for key, (type_name, default) in STATED_DEFAULTS.items():
        assert rows[key]["type"] == type_name and rows[key]["default"] == f"`{default}`", (key, rows[key])
    for key, (flag, env) in STATED_NAMES.items():
        assert (rows[key]["flag"], rows[key]["env"]) == (flag, env)
    olds = {row["old server"]: key for key, row in rows.items() if row["old server"]}
    assert olds == {
        "MAX_CONCURRENT_REQUESTS": "workers",
        "request_queue.maxsize": "queue_size",
        "server.max_connections": "max_connections",
    }
    assert markdown_table() in (ROOT / "docs/configuration.md").read_text(), (
        "docs/configuration.md table is stale: regenerate with python -m flipedit_previewd.config.docs"
    )


def test_every_readme_row_is_a_working_flag_and_in_help(tmp_path: Path) -> None:
    """Each flag the README names, passed on a real command line, sets its key (and only test_ flags hide from "
    "--help)."""
    rows = readme_config_table()
    helped = set(re.findall(r"--[a-z][a-z0-9-]*", build_parser().format_help()))
    argv: list[str] = []
    expected: dict[str, object] = {}
    for key, row in rows.items():
        assert (row["flag"] in helped) != key.startswith("test_"), key
        text, value = sample(key, row["type"], row["default"])
        argv += [row["flag"], text]
        expected[key] = value
    values, sources = print_config(argv, {}, tmp_path)
    assert set(values) == set(rows)  # the README lists every key --print-config shows, no more
    for key, value in expected.items():
        assert values[key] == value and sources[key] == "command line", (key, values[key], sources[key])


def test_every_readme_row_is_a_working_environment_variable(tmp_path: Path) -> None:
    rows = readme_config_table()
    env: dict[str, str] = {}
    expected: dict[str, object] = {}
    for key, row in rows.items():
        text, value = sample(key, row["type"], row["default"])
        env[row["env"]] = text
        expected[key] = value
    values, sources = print_config([], env, tmp_path)
    for key, value in expected.items():
        assert values[key] == value and sources[key] == f"environment ({rows[key]['env']})", (
            key,
            values[key],
            sources[key],
        )
    # And through load() with the real process environment (not a dict handed to it):
    os.environ["FLIPEDIT_PREVIEWD_QUEUE_SIZE"] = "13"
    try:
        config = load({}, None, tmp_path / "none.toml", None)
    finally:
        del os.environ["FLIPEDIT_PREVIEWD_QUEUE_SIZE"]
    assert config.queue_size == 13 and "FLIPEDIT_PREVIEWD_QUEUE_SIZE" in config.sources["queue_size"]


def test_old_server_knobs_are_documented() -> None:
    olds = {s.old_name: s.name for s in SETTINGS if s.old_name}
    assert olds == {
        "MAX_CONCURRENT_REQUESTS": "workers",
        "request_queue.maxsize": "queue_size",
        "server.max_connections": "max_connections",
    }


def test_print_config_shows_each_source(tmp_path: Path) -> None:
    conf = tmp_path / "flipedit-preview"
    conf.mkdir()
    (conf / "previewd.toml").write_text("queue_size = 11\n")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "FLIPEDIT_PREVIEWD_WORKERS": "4"}
    out = subprocess.run(
        [str(ROOT / ".venv/bin/flipedit-previewd"), "--print-config", "--jpeg-quality", "33"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = {line.split("=")[0].strip(): line for line in out.splitlines()}
    assert "11" in lines["queue_size"] and "user file" in lines["queue_size"]
    assert "4" in lines["workers"] and "environment (FLIPEDIT_PREVIEWD_WORKERS)" in lines["workers"]
    assert "33" in lines["jpeg_quality"] and "command line" in lines["jpeg_quality"]
    assert "default" in lines["canvas_width"]


@pytest.mark.parametrize("how", ["file", "env", "flag"])
def test_daemon_refuses_to_start_on_bad_value(tmp_path: Path, how: str) -> None:
    conf = tmp_path / "flipedit-preview"
    conf.mkdir()
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path)}
    args = [str(ROOT / ".venv/bin/flipedit-previewd"), "--print-config"]
    if how == "file":
        (conf / "previewd.toml").write_text("jpeg_quality = 500\n")
    elif how == "env":
        env["FLIPEDIT_PREVIEWD_JPEG_QUALITY"] = "abc"
    else:
        args += ["--jpeg-quality", "0"]
    result = subprocess.run(args, env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert "jpeg_quality" in result.stderr
    assert {"file": "previewd.toml", "env": "FLIPEDIT_PREVIEWD_JPEG_QUALITY", "flag": "command line"}[
        how
    ] in result.stderr


def test_unknown_environment_variable_is_an_error_like_an_unknown_toml_key() -> None:
    with pytest.raises(ConfigError, match="FLIPEDIT_PREVIEWD_WROKERS"):
        load({}, {"FLIPEDIT_PREVIEWD_WROKERS": "2"}, Path("/nonexistent/u.toml"), None)
    assert (
        load({}, {"FLIPEDIT_PREVIEWD_WORKERS": "3", "OTHER_WROKERS": "x"}, Path("/nonexistent/u.toml"), None).workers
        == 3
    )


def test_print_config_is_toml_that_loads_back_to_the_same_configuration(tmp_path: Path) -> None:
    import tomllib

    config = load(
        {"demo": "true", "listen": ["127.0.0.1:9000", "unix:/run/x y.sock"], "project": 'a "quoted" \\ path'},
        {"FLIPEDIT_PREVIEWD_QUEUE_TIMEOUT": "1.5"},
        Path("/nonexistent/u.toml"),
        None,
    )
    text = config.describe()
    assert "False" not in text and "True" not in text and "()" not in text
    saved = tmp_path / "previewd.toml"
    saved.write_text(text)
    tomllib.loads(text)
    again = load({}, {}, saved, None)
    assert dict(again.values) == dict(config.values)


@pytest.mark.parametrize("spec", ["nonsense", "127.0.0.1:", "host:99999", "unix:"])
def test_a_malformed_listen_address_is_a_configuration_error(spec: str) -> None:
    with pytest.raises(ConfigError, match="listen"):
        load({"listen": [spec]}, {}, Path("/nonexistent/u.toml"), None)
