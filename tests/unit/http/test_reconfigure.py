"""Typed configuration and the one ``apply()``: start and SIGHUP set the same things, restart-only waits.

A real ``Server`` (and its ``Service``) is built here without starting it: no socket is opened,
no worker spawned; ``apply()`` reaches the same objects it reaches in the daemon.
"""

from __future__ import annotations

import dataclasses
import subprocess
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flipedit_previewd.app.service import Service
from flipedit_previewd.common.journal import EventLog
from flipedit_previewd.config.schema import SETTINGS, TYPE_NAMES, Config, Settings, load
from flipedit_previewd.http.lifecycle import LifecycleState
from flipedit_previewd.http.reconfigure import apply
from flipedit_previewd.http.server import Server

ROOT = Path(__file__).resolve().parents[3]
LIVE = [s for s in SETTINGS if not s.restart]
RESTART = [s for s in SETTINGS if s.restart]


def base_config(tmp_path: Path, **overrides: Any) -> Config:
    cli = {"token_file": str(tmp_path / "token"), "metadata_db": str(tmp_path / "no-such-list.sqlite"), **overrides}
    return load(cli, {}, tmp_path / "no-user.toml", None)


def changed(config: Config, names: list[str]) -> Config:
    """``config`` with each named setting set to another valid value of its type."""
    other: dict[str, Any] = {}
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool):
            other[name] = not value
        elif isinstance(value, int):
            other[name] = value + 3
        elif isinstance(value, float):
            other[name] = value * 0.5
        elif isinstance(value, tuple):
            other[name] = (*value, "example.org:8081" if name == "allowed_hosts" else "/srv/media")
        else:
            other[name] = value + "x"
    return dataclasses.replace(config, **other)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    made: list[Server] = []
    yield made
    for server in made:
        server.service.close()


def built(servers: list[Server], config: Config) -> Server:
    log = EventLog()
    lifecycle = LifecycleState()
    server = Server(config, Service(config, log, lifecycle), lifecycle, None, log)
    servers.append(server)
    return server


def running_state(server: Server) -> dict[str, Any]:
    """Every plain value the objects apply() reaches hold (what a setting captured at construction lands in)."""
    service = server.service
    parts = {
        "limits": server.limits,
        "admission": service.admission,
        "frames": service.frames,
        "lag": service.lag,
        "pool": service.pool,
        "guard": server.guard,
        "source": service.source,
        "ahead": service.ahead,
    }
    state: dict[str, Any] = {"request_timeout": server.request_timeout}
    for part_name, part in parts.items():
        attributes = dataclasses.asdict(part) if dataclasses.is_dataclass(part) else vars(part)  # type: ignore[arg-type]
        for key, value in attributes.items():
            if key in ("token", "started") or not isinstance(value, (int, float, str, bool, tuple, set, frozenset)):
                continue
            state[f"{part_name}.{key}"] = value
    return state


def test_config_has_no_untyped_access_path() -> None:
    assert "__getattr__" not in vars(Config) and "__getattr__" not in vars(Settings)
    hints = typing.get_type_hints(Config)
    for s in SETTINGS:
        assert hints[s.name] in TYPE_NAMES and hints[s.name] is not Any, s.name


def test_mypy_sees_every_setting_typed(tmp_path: Path) -> None:
    """With ``__getattr__ -> Any`` each line below is 'Expression has type Any'; typed fields pass."""
    probe = tmp_path / "probe_config_types.py"
    lines = [
        "# mypy: disallow-any-expr",
        "from flipedit_previewd.config.schema import Config",
        "",
        "",
        "def probe(c: Config) -> None:",
    ]
    lines += [f"    v{i} = c.{s.name}  # noqa" for i, s in enumerate(SETTINGS)]
    lines += [f"    print(v{i})" for i in range(len(SETTINGS))]
    probe.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [str(ROOT / ".venv/bin/mypy"), "--strict", "--cache-dir", str(tmp_path / "cache"), str(probe)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def test_every_setting_is_marked_live_or_restart_and_defaults_fit_their_type() -> None:
    fields = dataclasses.fields(Settings)
    assert [f.name for f in fields] == [s.name for s in SETTINGS]
    for f in fields:
        assert isinstance(f.metadata["setting"].restart, bool), f.name
    for s in SETTINGS:
        assert s.holds(s.default) and s.parse(s.default) == s.default, s.name
    assert {s.name for s in RESTART} >= {
        "listen",
        "workers",
        "canvas_width",
        "canvas_height",
        "frame_rate",
        "max_connections",
    }
    assert {s.name for s in LIVE} >= {
        "request_timeout",
        "hang_threshold",
        "keepalive_timeout",
        "max_headers",
        "queue_size",
    }


def test_every_scalar_parser_refuses_nonsense_and_reads_what_print_config_writes() -> None:
    for s in SETTINGS:
        if s.type_name in ("int", "float", "bool"):
            with pytest.raises(ValueError):
                s.parse("nonsense")  # e.g. a builtin bool() as parser would take it as True
        if s.type_name == "bool":
            assert s.parse("false") is False and s.parse("true") is True, s.name


def test_a_value_of_the_wrong_type_is_refused_even_past_the_parser() -> None:
    config = Settings()
    with pytest.raises(TypeError, match="workers"):
        dataclasses.replace(config, workers="2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="workers"):
        dataclasses.replace(config, workers=True)
    with pytest.raises(TypeError, match="frame_rate"):
        dataclasses.replace(config, frame_rate=30)  # the parser makes every float a float; so must anything else
    with pytest.raises(TypeError, match="allowed_hosts"):
        dataclasses.replace(config, allowed_hosts=["a"])  # type: ignore[arg-type]


def test_readme_table_says_which_settings_a_reload_applies() -> None:
    rows = {}
    for line in (ROOT / "docs/configuration.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) > 6 and cells[1].startswith("`") and "FLIPEDIT_PREVIEWD_" in cells[1]:
            rows[cells[1].split("`")[1]] = cells[-2]  # the last column
    assert rows == {s.name: ("restart" if s.restart else "applied") for s in SETTINGS}


def test_reload_leaves_the_running_parts_as_a_fresh_start_with_the_new_live_settings(
    tmp_path: Path, servers: list[Server]
) -> None:
    """Catches a live setting that is captured at construction and not re-applied on SIGHUP
    (before: HTTP limits, request_timeout, hang_threshold)."""
    old = base_config(tmp_path)
    new = changed(old, [s.name for s in LIVE if s.name != "token_file"])
    reloaded = built(servers, old)
    before = running_state(reloaded)
    effective = apply(new, reloaded)
    fresh = built(servers, new)
    assert effective == new and reloaded.config is effective and reloaded.service.config is effective
    assert effective.restart_pending == ()
    after, expected = running_state(reloaded), running_state(fresh)
    assert after == expected
    for name, key in [
        ("hang_threshold", "pool.hang_threshold"),
        ("request_timeout", "request_timeout"),
        ("max_headers", "limits.max_headers"),
        ("keepalive_timeout", "limits.keepalive_timeout"),
        ("max_body_bytes", "limits.max_body_bytes"),
        ("queue_size", "admission.queue_size"),
        ("max_timeline_clips", "source.max_rows"),
        ("frame_cache_bytes", "frames.capacity"),
    ]:
        assert before[key] != after[key] == getattr(new, name), name


@pytest.mark.parametrize("name", [s.name for s in LIVE])
def test_each_live_setting_changes_what_runs(tmp_path: Path, servers: list[Server], name: str) -> None:
    old = base_config(tmp_path)
    new = changed(old, [name])
    server = built(servers, old)
    apply(new, server)
    assert (
        getattr(server.config, name) == getattr(server.service.config, name) == getattr(new, name) != getattr(old, name)
    )
    assert server.config.restart_pending == ()


def test_restart_only_settings_keep_their_running_value_and_are_reported_pending(
    tmp_path: Path, servers: list[Server]
) -> None:
    """Before: /health reported configured values that were not in force (and some silently were not)."""
    old = base_config(tmp_path)
    names = ["workers", "canvas_width", "frame_rate", "max_connections"]
    new = changed(old, names + ["queue_size"])
    server = built(servers, old)
    before = running_state(server)
    effective = apply(new, server)
    assert effective.restart_pending == ("workers", "max_connections", "canvas_width", "frame_rate")  # schema order
    for name in names:
        assert getattr(effective, name) == getattr(old, name) != getattr(new, name)
        assert effective.sources[name] == old.sources[name]
    assert effective.queue_size == new.queue_size  # a live one in the same reload is applied
    health = server.service.health()
    assert health["restart_pending"] == list(effective.restart_pending)
    assert health["max_concurrent"] == old.workers and health["max_connections"] == old.max_connections
    assert health["queue_capacity"] == new.queue_size
    assert {k: v for k, v in running_state(server).items() if k != "admission.queue_size"} == {
        k: v for k, v in before.items() if k != "admission.queue_size"
    }
    # Configured back to what runs: nothing is pending any more.
    assert apply(old, server).restart_pending == ()
    assert server.service.health()["restart_pending"] == []


def test_start_applies_through_the_same_apply(tmp_path: Path, servers: list[Server]) -> None:
    config = base_config(tmp_path, hang_threshold="7.5", max_headers="12", request_timeout="3")
    server = built(servers, config)
    assert server.service.pool.hang_threshold == 7.5 and server.limits.max_headers == 12
    assert server.request_timeout == 3.0 and server.config.restart_pending == ()
