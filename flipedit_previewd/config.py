"""One configuration schema for CLI flags, environment, TOML files and the README table.

Every knob is declared once in ``SETTINGS``. The argument parser, the
``FLIPEDIT_PREVIEWD_*`` environment variables, the TOML keys and the README
table are all derived from it, so they cannot drift apart. Each effective value
remembers where it came from so ``--print-config`` can explain itself and a bad
value can be reported against the source that supplied it.
"""

from __future__ import annotations

import argparse
import json
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "FLIPEDIT_PREVIEWD_"
SYSTEM_CONFIG = Path("/etc/flipedit-preview/previewd.toml")


def user_config_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "flipedit-preview" / "previewd.toml"


class ConfigError(Exception):
    """A configuration value that cannot be used; names key, value and source."""


def _positive_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError("expected an integer")
    value = int(raw)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _non_negative_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError("expected an integer")
    value = int(raw)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _positive_float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError("expected a number")
    value = float(raw)
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError("must be a finite number above 0")
    return value


def _quality(raw: Any) -> int:
    value = _positive_int(raw)
    if value > 95:
        raise ValueError("JPEG quality must be between 1 and 95")
    return value


def _text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError("expected a string")
    return raw


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _listen_list(raw: Any) -> tuple[str, ...]:
    """HOST:PORT, [V6]:PORT or unix:PATH each; a typo is a configuration error, not a socket error."""
    items = _str_list(raw)
    for item in items:
        if item.startswith("unix:"):
            if len(item) == 5:
                raise ValueError(f"{item!r}: unix: needs a path")
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item!r} is not HOST:PORT (port 1-65535) or unix:PATH")
        if host.startswith("[") != host.endswith("]"):
            raise ValueError(f"{item!r}: an IPv6 host goes in brackets, e.g. [::1]:8081")
    return items


def _str_list(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        items = [part.strip() for part in raw.replace(",", " ").split()]
    elif isinstance(raw, (list, tuple)):
        items = [str(part).strip() for part in raw]
    else:
        raise ValueError("expected a list of strings")
    return tuple(item for item in items if item)


@dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[Any], Any]
    default: Any
    unit: str
    help: str
    type_name: str
    repeatable: bool = False
    old_name: str = ""

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting("listen", _listen_list, (), "", "Address to listen on when systemd passes no socket: HOST:PORT or unix:PATH (repeatable).", "list", repeatable=True),
    Setting("project", _text, "", "path", "FlipEdit project database to preview (pins it); empty means follow the editor's project list: the newest project whose database exists, re-checked while running.", "str"),
    Setting("metadata_db", _text, "~/Documents/flipedit_projects_metadata.sqlite", "path", "The editor's project list, followed while the daemon runs (a change is noticed within 1 s) unless project pins one.", "str"),
    Setting("workers", _positive_int, 2, "", "Render workers (processes); renders in flight never exceed this.", "int", old_name="MAX_CONCURRENT_REQUESTS"),
    Setting("queue_size", _non_negative_int, 20, "", "Renders that may wait for a worker; more are answered 503.", "int", old_name="request_queue.maxsize"),
    Setting("queue_timeout", _positive_float, 2.5, "s", "Deadline for a queued render; a render not started by then is answered 503 (the editor gives up after 3 s).", "float"),
    Setting("max_connections", _positive_int, 1024, "", "Open client connections; a connection above this is answered 503 as soon as it is accepted and closed (the soft RLIMIT_NOFILE is raised to cover it).", "int", old_name="server.max_connections"),
    Setting("keepalive_timeout", _positive_float, 20.0, "s", "Idle keep-alive connections are closed after this; must outlive the editor's 15 s pool.", "float"),
    Setting("request_timeout", _positive_float, 10.0, "s", "Time allowed to receive one whole request (slowloris guard); answered 408.", "float"),
    Setting("max_request_line", _positive_int, 8192, "bytes", "Longest request line; longer is answered 414.", "int"),
    Setting("max_header_bytes", _positive_int, 16384, "bytes", "Largest request head; larger is answered 431.", "int"),
    Setting("max_headers", _positive_int, 100, "", "Most request header fields; more is answered 431.", "int"),
    Setting("max_body_bytes", _positive_int, 4 * 1024 * 1024, "bytes", "Largest request body (PUT /timeline); larger is answered 413.", "int"),
    Setting("hang_threshold", _positive_float, 10.0, "s", "A render running longer than this counts as hung and is logged; all workers hung stops the watchdog heartbeat.", "float"),
    Setting("render_budget", _positive_float, 5.0, "s", "A render running longer is cancelled (its worker replaced) and answered 504; the same frame of the same timeline is then refused at once for heavy_frame_ttl. Kept below hang_threshold.", "float"),
    Setting("heavy_frame_ttl", _positive_float, 60.0, "s", "How long a frame that exceeded render_budget is refused at once (504) instead of rendered again.", "float"),
    Setting("max_layer_pixels", _positive_int, 400_000_000, "px", "Most layers visible at one frame times canvas pixels a timeline may have (checked on PUT and database read; 413 names it).", "int"),
    Setting("max_timeline_clips", _positive_int, 65536, "", "Most clips in a timeline or project database; more is refused (413) or the last good timeline kept.", "int"),
    Setting("db_read_timeout", _positive_float, 2.0, "s", "Deadline for reading a project database (SQLite progress handler); past it the read is abandoned and the last good timeline kept.", "float"),
    Setting("loop_lag_threshold", _positive_float, 0.25, "s", "Event-loop lag above this is a journal event (loop_lag); the lag itself is in /health, /metrics and STATUS=.", "float"),
    Setting("drain_timeout", _positive_float, 20.0, "s", "On SIGTERM, time allowed for in-flight and queued work; keep below TimeoutStopSec.", "float"),
    Setting("fdstore", _bool, True, "", "On a planned stop (restart, upgrade), hand keep-alive connections that are between requests to systemd's file descriptor store, so the next instance serves them and the editor loses none (systemd >= 246, FileDescriptorStoreMax= >= max_connections in the unit); false: each connection's last answer says Connection: close and idle ones are closed.", "bool"),
    Setting("loop_nice", _non_negative_int, 10, "", "Nice increment of the event-loop thread only (Linux priorities are per thread): under a flood of requests the CPU goes to rendering rather than to refusing; 0 disables.", "int"),
    Setting("canvas_width", _positive_int, 1280, "px", "Canvas width of the composited timeline.", "int"),
    Setting("canvas_height", _positive_int, 720, "px", "Canvas height of the composited timeline.", "int"),
    Setting("frame_rate", _positive_float, 30.0, "fps", "Timeline frame rate (the editor's timing model).", "float"),
    Setting("jpeg_quality", _quality, 85, "", "Default JPEG quality; a request may ask for another with ?quality=.", "int"),
    Setting("frame_cache_bytes", _non_negative_int, 64 * 1024 * 1024, "bytes", "Memory for encoded frames, keyed by timeline revision, frame and output parameters.", "int"),
    Setting("render_ahead", _bool, True, "", "Render the next frames of a playback or scrub on idle workers before the editor asks (never delays a real request).", "bool"),
    Setting("render_ahead_frames", _non_negative_int, 8, "frames", "How many frames render-ahead prepares past the last one asked for; 0 disables it.", "int"),
    Setting("render_ahead_workers", _non_negative_int, 0, "", "Most workers rendering ahead at once; 0 means all workers but one (at least one).", "int"),
    Setting("source_cache_bytes", _non_negative_int, 128 * 1024 * 1024, "bytes", "Memory per worker for scaled stills and source frames.", "int"),
    Setting("allowed_roots", _str_list, (), "paths", "Directories media may be read from; empty means the project's directory and its assets' directories.", "list", repeatable=True),
    Setting("allowed_hosts", _str_list, (), "", "Extra Host header values accepted on TCP (besides 127.0.0.1:PORT, localhost:PORT, [::1]:PORT); '*' turns the Host check off.", "list", repeatable=True),
    Setting("token_file", _text, "", "path", "Where the bearer token for PUT/DELETE over TCP is written at start; empty means $RUNTIME_DIRECTORY/token, else $XDG_RUNTIME_DIR/flipedit-preview/token.", "str"),
    Setting("max_output_pixels", _positive_int, 3840 * 2160, "px", "Largest output (width x height) a request may ask for.", "int"),
    Setting("max_source_pixels", _positive_int, 100_000_000, "px", "Largest still image or video frame (width x height, from the file's header) decoded; larger renders a placeholder.", "int"),
    Setting("demo", _bool, False, "", "Serve the built-in demo project (generated on first run).", "bool"),
    Setting("test_render_hook", _text, "", "", "Test only: 'sleep:SECONDS' or 'hang' makes every render stall, to exercise the watchdog; 'nice:FILE' records each render's thread priority.", "str"),
)

BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Config:
    values: Mapping[str, Any]
    sources: Mapping[str, str] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def describe(self) -> str:
        """Valid TOML: saved as previewd.toml it gives the same configuration back."""
        width = max(len(name) for name in self.values)
        lines = ["# flipedit-previewd effective configuration; each value's source follows it"]
        for setting in SETTINGS:
            shown = toml_value(self.values[setting.name])
            lines.append(f"{setting.name:<{width}} = {shown:<40} # {self.sources[setting.name]}")
        return "\n".join(lines)


def toml_value(value: Any) -> str:
    """A TOML literal for the schema's types (bool, int, float, str, list of str)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string (same escapes)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _apply(setting: Setting, raw: Any, source: str) -> Any:
    try:
        return setting.parse(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {setting.name} = {raw!r}: {exc}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc}") from None
    unknown = sorted(set(data) - set(BY_NAME))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (known keys: see --print-config)")
    return data


def build_parser(prog: str = "flipedit-previewd") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="FlipEdit preview daemon: renders timeline frames as JPEG over HTTP, socket-activated by systemd.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--print-config", action="store_true", help="print the effective configuration with the source of each value, then exit")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    for setting in SETTINGS:
        unit = f" [{setting.unit}]" if setting.unit else ""
        default = toml_value(setting.default) if setting.default not in ("", ()) else "none"
        text = f"{setting.help}{unit} (env {setting.env}; default {default})"
        if setting.name.startswith("test_"):
            text = argparse.SUPPRESS  # test-only: not in --help, the man page or completions
        if setting.type_name == "bool":
            parser.add_argument(setting.flag, dest=setting.name, nargs="?", const="true", metavar="BOOL", help=text)
        elif setting.repeatable:
            parser.add_argument(setting.flag, dest=setting.name, action="append", metavar=setting.name.upper(), help=text)
        else:
            parser.add_argument(setting.flag, dest=setting.name, metavar=setting.name.upper(), help=text)
    return parser


def load(
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    user_file: Path | None = None,
    system_file: Path | None = SYSTEM_CONFIG,
) -> Config:
    """Merge defaults < system file < user file < environment < CLI."""
    environ = os.environ if environ is None else environ
    cli = cli or {}
    user_file = user_config_path(environ) if user_file is None else user_file
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if system_file is not None:
        layers.append((f"system file {system_file}", _read_toml(system_file)))
    layers.append((f"user file {user_file}", _read_toml(user_file)))
    known_env = {s.env for s in SETTINGS}
    unknown_env = sorted(key for key in environ if key.startswith(ENV_PREFIX) and key not in known_env)
    if unknown_env:
        raise ConfigError(f"environment: unknown variable {unknown_env[0]} (known: the settings in --help, as {ENV_PREFIX}<KEY>)")
    layers.append(("environment", {s.name: environ[s.env] for s in SETTINGS if s.env in environ}))
    layers.append(("command line", {k: v for k, v in cli.items() if k in BY_NAME}))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        values[setting.name] = setting.parse(setting.default)
        sources[setting.name] = "default"
        for label, layer in layers:
            if setting.name in layer:
                source = f"{label} ({setting.env})" if label == "environment" else label
                values[setting.name] = _apply(setting, layer[setting.name], source)
                sources[setting.name] = source
    return Config(values, sources)


def from_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> tuple[Config, argparse.Namespace]:
    namespace = build_parser().parse_args(argv)
    return load(vars(namespace), environ), namespace


def markdown_table() -> str:
    rows = ["| key / flag / env | type | default | unit | old server | meaning |", "|---|---|---|---|---|---|"]
    for s in SETTINGS:
        default = list(s.default) if isinstance(s.default, tuple) else s.default
        rows.append(f"| `{s.name}` / `{s.flag}` / `{s.env}` | {s.type_name} | `{default!r}` | {s.unit} | {s.old_name} | {s.help} |")
    return "\n".join(rows)
