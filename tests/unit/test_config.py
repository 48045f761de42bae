from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from flipedit_previewd.config import SETTINGS, ConfigError, build_parser, load, markdown_table

ROOT = Path(__file__).resolve().parents[2]


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
    expected_source = {"system": str(system), "user": str(user), "env": "FLIPEDIT_PREVIEWD_WORKERS", "cli": "command line"}[source]
    assert expected_source in text


def test_unknown_toml_key_is_an_error(tmp_path: Path) -> None:
    user = tmp_path / "u.toml"
    user.write_text("wrokers = 2\n")
    with pytest.raises(ConfigError, match="wrokers"):
        load({}, {}, user, None)


def test_every_setting_has_flag_env_and_readme_row() -> None:
    table = markdown_table()
    flags = build_parser().format_help()
    for setting in SETTINGS:
        assert (setting.flag in flags) != setting.name.startswith("test_")  # test-only flags stay out of --help
        assert setting.env in table and f"`{setting.name}`" in table
    readme = (ROOT / "README.md").read_text()
    assert table in readme, "README configuration table is stale: regenerate with python -m flipedit_previewd.docs"


def test_old_server_knobs_are_documented() -> None:
    olds = {s.old_name: s.name for s in SETTINGS if s.old_name}
    assert olds == {"MAX_CONCURRENT_REQUESTS": "workers", "request_queue.maxsize": "queue_size", "server.max_connections": "max_connections"}


def test_print_config_shows_each_source(tmp_path: Path) -> None:
    conf = tmp_path / "flipedit-preview"
    conf.mkdir()
    (conf / "previewd.toml").write_text("queue_size = 11\n")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "FLIPEDIT_PREVIEWD_WORKERS": "4"}
    out = subprocess.run([str(ROOT / ".venv/bin/flipedit-previewd"), "--print-config", "--jpeg-quality", "33"],
                         env=env, capture_output=True, text=True, check=True).stdout
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
    assert {"file": "previewd.toml", "env": "FLIPEDIT_PREVIEWD_JPEG_QUALITY", "flag": "command line"}[how] in result.stderr


def test_unknown_environment_variable_is_an_error_like_an_unknown_toml_key() -> None:
    with pytest.raises(ConfigError, match="FLIPEDIT_PREVIEWD_WROKERS"):
        load({}, {"FLIPEDIT_PREVIEWD_WROKERS": "2"}, Path("/nonexistent/u.toml"), None)
    assert load({}, {"FLIPEDIT_PREVIEWD_WORKERS": "3", "OTHER_WROKERS": "x"}, Path("/nonexistent/u.toml"), None).workers == 3


def test_print_config_is_toml_that_loads_back_to_the_same_configuration(tmp_path: Path) -> None:
    import tomllib

    config = load({"demo": "true", "listen": ["127.0.0.1:9000", "unix:/run/x y.sock"], "project": 'a "quoted" \\ path'},
                  {"FLIPEDIT_PREVIEWD_QUEUE_TIMEOUT": "1.5"}, Path("/nonexistent/u.toml"), None)
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
