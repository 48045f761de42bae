"""One configuration schema for CLI flags, environment, TOML files and the README table.

Every knob is declared once, as a typed field of ``Settings`` whose metadata
carries its parser, unit, help text and whether SIGHUP applies it (``restart``
marks the ones that need a restart). The argument parser, the
``FLIPEDIT_PREVIEWD_*`` environment variables, the TOML keys, ``SETTINGS`` and
the README table are all derived from those fields, so they cannot drift
apart, and mypy sees every ``config.x`` with its declared type. Each effective
value remembers where it came from so ``--print-config`` can explain itself and
a bad value can be reported against the source that supplied it.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import re
import shlex
import sys
import tomllib
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from flipedit_previewd.config.values import (
    LIST_SYNTAX,
    MAX_SIDE,
    boolean,
    canvas_side,
    listen_list,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    quality,
    split_list,
    str_list,
    text,
)

ENV_PREFIX = "FLIPEDIT_PREVIEWD_"
SYSTEM_CONFIG = Path("/etc/flipedit-preview/previewd.toml")
T = TypeVar("T")


def user_config_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "flipedit-preview" / "previewd.toml"


class ConfigError(Exception):
    """A configuration value that cannot be used; names key, value and source (and the file's line).

    The parts are kept apart as well as in the message, so a failed reload can be shown field by
    field (``/health``'s ``config_error``, the journal's CONFIG_* fields).
    """

    def __init__(
        self, message: str, *, source: str = "", key: str = "", file: str = "", line: int | None = None
    ) -> None:
        super().__init__(message)
        self.message, self.source, self.key, self.file, self.line = message, source, key, file, line

    def fields(self) -> dict[str, object]:
        return {
            "message": self.message,
            "source": self.source,
            "key": self.key or None,
            "file": self.file or None,
            "line": self.line,
        }


@dataclass(frozen=True)
class Meta:
    """What a field of ``Settings`` carries besides its name, type and default."""

    parse: Callable[[Any], object]
    help: str
    unit: str = ""
    restart: bool = False  # True: SIGHUP keeps the running value (reported in /health restart_pending)
    repeatable: bool = False
    old_name: str = ""


def setting(
    default: T,
    parse: Callable[[Any], T],
    help: str,
    unit: str = "",
    *,
    restart: bool = False,
    repeatable: bool = False,
    old_name: str = "",
) -> T:
    """A field of ``Settings``: mypy checks the default and the parser against the field's type."""
    meta = Meta(parse, help, unit, restart, repeatable, old_name)
    return field(default=default, metadata={"setting": meta})


@dataclass(frozen=True)
class Settings:
    """The schema: one typed field per setting. ``restart=True``: applied at start only."""

    listen: tuple[str, ...] = setting(
        (),
        listen_list,
        "Address to listen on when systemd passes no socket: HOST:PORT or unix:PATH (repeatable).",
        restart=True,
        repeatable=True,
    )
    project: str = setting(
        "",
        text,
        "FlipEdit project database to preview (pins it); empty means follow the editor's project list: the newest "
        "project whose database exists, re-checked while running.",
        "path",
        restart=True,
    )
    metadata_db: str = setting(
        "~/Documents/flipedit_projects_metadata.sqlite",
        text,
        "The editor's project list, followed while the daemon runs (a change is noticed within 1 s) unless project "
        "pins one.",
        "path",
        restart=True,
    )
    workers: int = setting(
        2,
        positive_int,
        "Render workers (processes); renders in flight never exceed this.",
        restart=True,
        old_name="MAX_CONCURRENT_REQUESTS",
    )
    queue_size: int = setting(
        20,
        non_negative_int,
        "Renders that may wait for a worker; more are answered 503.",
        old_name="request_queue.maxsize",
    )
    queue_timeout: float = setting(
        2.5,
        positive_float,
        "Deadline for a queued render; a render not started by then is answered 503 (the editor gives up after 3 s).",
        "s",
    )
    max_connections: int = setting(
        1024,
        positive_int,
        "Open client connections; a connection above this is answered 503 as soon as it is accepted and closed (the "
        "soft RLIMIT_NOFILE is raised to cover it).",
        restart=True,
        old_name="server.max_connections",
    )
    keepalive_timeout: float = setting(
        20.0,
        positive_float,
        "Idle keep-alive connections are closed after this; must outlive the editor's 15 s pool.",
        "s",
    )
    request_timeout: float = setting(
        10.0, positive_float, "Time allowed to receive one whole request (slowloris guard); answered 408.", "s"
    )
    max_request_line: int = setting(8192, positive_int, "Longest request line; longer is answered 414.", "bytes")
    max_header_bytes: int = setting(16384, positive_int, "Largest request head; larger is answered 431.", "bytes")
    max_headers: int = setting(100, positive_int, "Most request header fields; more is answered 431.")
    max_body_bytes: int = setting(
        4 * 1024 * 1024, positive_int, "Largest request body (PUT /timeline); larger is answered 413.", "bytes"
    )
    max_buffered_body_bytes: int = setting(
        16 * 1024 * 1024,
        positive_int,
        "Request bodies buffered at once, all connections together; a body is charged when its head has passed the "
        "access checks, before it is read. A body larger than this is answered 413, one that does not fit now 503 with "
        "Retry-After.",
        "bytes",
    )
    hang_threshold: float = setting(
        10.0,
        positive_float,
        "A render running longer than this counts as hung and is logged; "
        "all workers hung stops the watchdog heartbeat.",
        "s",
    )
    render_budget: float = setting(
        5.0,
        positive_float,
        "A render running longer is cancelled (its worker replaced) and answered 504; the same frame of the same "
        "timeline is then refused at once for heavy_frame_ttl. Kept below hang_threshold.",
        "s",
    )
    heavy_frame_ttl: float = setting(
        60.0,
        positive_float,
        "How long a frame that exceeded render_budget is refused at once (504) instead of rendered again.",
        "s",
    )
    max_layer_pixels: int = setting(
        400_000_000,
        positive_int,
        "Most layers visible at one frame times canvas pixels a timeline may have (checked on PUT and database read; "
        "413 names it).",
        "px",
    )
    max_timeline_clips: int = setting(
        65536,
        positive_int,
        "Most clips in a timeline or project database; more is refused (413) or the last good timeline kept.",
    )
    db_read_timeout: float = setting(
        2.0,
        positive_float,
        "Deadline for reading a project database (SQLite progress handler); past it the read is abandoned and the last "
        "good timeline kept.",
        "s",
    )
    loop_lag_threshold: float = setting(
        0.25,
        positive_float,
        "Event-loop lag above this is a journal event (loop_lag); the lag itself is in /health, /metrics and STATUS=.",
        "s",
    )
    drain_timeout: float = setting(
        20.0, positive_float, "On SIGTERM, time allowed for in-flight and queued work; keep below TimeoutStopSec.", "s"
    )
    fdstore: bool = setting(
        True,
        boolean,
        "On a planned stop (restart, upgrade), hand keep-alive connections that are between requests to systemd's file "
        "descriptor store, so the next instance serves them and the editor loses none (systemd >= 246, "
        "FileDescriptorStoreMax= >= max_connections in the unit); false: each connection's last answer says "
        "Connection: close and idle ones are closed.",
        restart=True,
    )
    loop_nice: int = setting(
        10,
        non_negative_int,
        "Nice increment of the event-loop thread only (Linux priorities are per thread): under a flood of requests the "
        "CPU goes to rendering rather than to refusing; 0 disables.",
        restart=True,
    )
    canvas_width: int = setting(
        1280,
        canvas_side,
        f"Canvas width of the composited timeline: 1 to {MAX_SIDE}, and width x height at most max_output_pixels (a "
        f"full-size frame must be possible).",
        "px",
        restart=True,
    )
    canvas_height: int = setting(
        720,
        canvas_side,
        f"Canvas height of the composited timeline: 1 to {MAX_SIDE}, and width x height at most max_output_pixels.",
        "px",
        restart=True,
    )
    frame_rate: float = setting(
        30.0, positive_float, "Timeline frame rate (the editor's timing model).", "fps", restart=True
    )
    jpeg_quality: int = setting(85, quality, "Default JPEG quality; a request may ask for another with ?quality=.")
    frame_cache_bytes: int = setting(
        64 * 1024 * 1024,
        non_negative_int,
        "Memory for encoded frames, keyed by timeline revision, frame and output parameters.",
        "bytes",
    )
    render_ahead: bool = setting(
        True,
        boolean,
        "Render the next frames of a playback or scrub on idle workers before the editor asks (never delays a real "
        "request).",
    )
    render_ahead_frames: int = setting(
        8,
        non_negative_int,
        "How many frames render-ahead prepares past the last one asked for; 0 disables it.",
        "frames",
    )
    render_ahead_workers: int = setting(
        0, non_negative_int, "Most workers rendering ahead at once; 0 means all workers but one (at least one)."
    )
    source_cache_bytes: int = setting(
        128 * 1024 * 1024,
        non_negative_int,
        "Memory per worker for scaled stills and source frames.",
        "bytes",
        restart=True,
    )
    allowed_roots: tuple[str, ...] = setting(
        (),
        str_list,
        "Directories media may be read from; empty means the project's directory and its assets' directories. One that "
        "does not exist is warned about (journal: media_roots), not refused.",
        "paths",
        repeatable=True,
    )
    allowed_hosts: tuple[str, ...] = setting(
        (),
        str_list,
        "Extra Host header values accepted on TCP (besides 127.0.0.1:PORT, localhost:PORT, [::1]:PORT); '*' turns the "
        "Host check off.",
        repeatable=True,
    )
    private_reads: bool = setting(
        False,
        boolean,
        "Require the owner's token over TCP (or the owner's uid on the unix socket) for frames, GET /timeline and "
        "/debug/*, as for PUT/DELETE; off by default because the editor sends no token (docs/security.md).",
    )
    token_file: str = setting(
        "",
        text,
        "Where the bearer token for PUT/DELETE over TCP is written at start; empty means $RUNTIME_DIRECTORY/token, "
        "else $XDG_RUNTIME_DIR/flipedit-preview/token.",
        "path",
        restart=True,
    )
    max_output_pixels: int = setting(
        3840 * 2160,
        positive_int,
        "Largest output (width x height) a request may ask for; at least canvas_width x canvas_height.",
        "px",
    )
    max_source_pixels: int = setting(
        100_000_000,
        positive_int,
        "Largest still image or video frame (width x height, from the file's header) decoded; larger renders a "
        "placeholder.",
        "px",
        restart=True,
    )
    proxies: bool = setting(
        True,
        boolean,
        "Make proxy media in the background for videos whose random frames are expensive (long GOPs, large frames): an "
        "all-intra copy at the preview's size, used for frames no larger than it (never for format=png); false: always "
        "decode the originals.",
        restart=True,
    )
    proxy_dir: str = setting(
        "",
        text,
        "Where proxies are stored; empty means $CACHE_DIRECTORY/proxies (the unit's CacheDirectory=), else "
        "$XDG_CACHE_HOME/flipedit-preview/proxies, else ~/.cache/flipedit-preview/proxies.",
        "path",
        restart=True,
    )
    proxy_budget_bytes: int = setting(
        8 * 1024**3,
        non_negative_int,
        "Disk for proxies; the least recently used are removed to stay within it, and a proxy that would pass it stops "
        "(what was made is used).",
        "bytes",
        restart=True,
    )
    proxy_width: int = setting(
        0,
        non_negative_int,
        "Width of the box proxies are made to fit (never larger than the source); 0 means the canvas's width and "
        "height.",
        "px",
        restart=True,
    )
    proxy_height: int = setting(
        0, non_negative_int, "Height of the box proxies are made to fit; 0 means the canvas's.", "px", restart=True
    )
    proxy_min_cost: float = setting(
        12.0,
        non_negative_float,
        "A video gets a proxy when a random frame decodes more than this many million pixels (half its keyframe "
        "interval plus one, times its frame's pixels: 1080p with a keyframe every 250 frames is 262, every 30 is 33); "
        "0 gives every video one.",
        "Mpx",
        restart=True,
    )
    demo: bool = setting(False, boolean, "Serve the built-in demo project (generated on first run).", restart=True)

    def __post_init__(self) -> None:
        # The run-time half of the typing: whatever built this object (a parser, replace()), each value
        # has its field's type, so what mypy sees is what is there.
        for s in SETTINGS:
            value = getattr(self, s.name)
            if not s.holds(value):
                raise TypeError(f"{s.name} = {value!r} is not a {s.type_name}")


# The field types the schema allows, with their names in --help and the README (a list is a tuple of str).
TYPE_NAMES: dict[object, str] = {int: "int", float: "float", bool: "bool", str: "str", tuple[str, ...]: "list"}


@dataclass(frozen=True)
class Setting:
    """One field of ``Settings`` as the parser, environment, TOML reader and docs see it."""

    name: str
    parse: Callable[[Any], object]
    default: object
    unit: str
    help: str
    type_name: str
    restart: bool = False
    repeatable: bool = False
    old_name: str = ""

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def on_reload(self) -> str:
        return "restart" if self.restart else "applied"

    def holds(self, value: object) -> bool:
        """Exactly the field's type: a bool is not an int here, an int is not a float."""
        if self.type_name == "list":
            return isinstance(value, tuple) and all(isinstance(item, str) for item in value)
        return type(value) in TYPE_NAMES and TYPE_NAMES[type(value)] == self.type_name


def _schema() -> tuple[Setting, ...]:
    hints = typing.get_type_hints(Settings)
    out = []
    for f in dataclasses.fields(Settings):
        meta = f.metadata["setting"]
        assert isinstance(meta, Meta)
        out.append(
            Setting(
                f.name,
                meta.parse,
                f.default,
                meta.unit,
                meta.help,
                TYPE_NAMES[hints[f.name]],
                meta.restart,
                meta.repeatable,
                meta.old_name,
            )
        )
    return tuple(out)


SETTINGS: tuple[Setting, ...] = _schema()
BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Config(Settings):
    """The effective settings plus where each came from and what waits for a restart."""

    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    # Restart-only settings whose configured value differs from the running one (shown in /health).
    restart_pending: tuple[str, ...] = field(default=(), compare=False)

    @property
    def values(self) -> dict[str, object]:
        return {s.name: getattr(self, s.name) for s in SETTINGS}

    def reloaded(self, new: Config) -> Config:
        """What runs after a reload to ``new``: its live settings, this one's restart-only ones."""
        kept: dict[str, Any] = {s.name: getattr(self, s.name) for s in SETTINGS if s.restart}
        pending = tuple(name for name, value in kept.items() if getattr(new, name) != value)
        sources = {**new.sources, **{name: self.sources.get(name, "default") for name in kept}}
        check_frame_possible({**new.values, **kept}, sources)  # the running canvas against a reloaded max_output_pixels
        return dataclasses.replace(new, **kept, sources=sources, restart_pending=pending)

    def describe(self) -> str:
        """Valid TOML: saved as previewd.toml it gives the same configuration back."""
        width = max(len(s.name) for s in SETTINGS)
        lines = ["# flipedit-previewd effective configuration; each value's source follows it"]
        for setting in SETTINGS:
            shown = toml_value(getattr(self, setting.name))
            lines.append(f"{setting.name:<{width}} = {shown:<40} # {self.sources.get(setting.name, 'default')}")
        return "\n".join(lines)


def toml_value(value: object) -> str:
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


# What a TOML value's type must be for each setting type: TOML says what a value is, so a string
# where a number is meant is a mistake to name, not text to convert (the environment and flags are
# text by nature and are parsed from text instead).
TOML_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "str": (str,),
    "list": (list,),
}
TOML_KINDS = {
    bool: "true/false",
    int: "a whole number",
    float: "a decimal number",
    str: "a string in quotes",
    list: "a list",
    dict: "a table",
}


@dataclass(frozen=True)
class Layer:
    """One source of values: a TOML file (typed values, line numbers from its text), the environment or the command "
    "line (text)."""

    label: str
    values: Mapping[str, Any]
    file: str = ""
    text: str = ""

    @property
    def is_text(self) -> bool:
        return self.label in ("environment", "command line")

    def where(self, setting: Setting, raw: Any) -> str:
        """The value as the user wrote it, and where: 'FILE line N: key = value', 'environment VAR: key = value'
        or 'command line: --flag value' (each name once: the reason that follows never repeats it)."""
        if self.label == "command line":
            shown = " ".join(
                f"{setting.flag} {shlex.quote(str(item))}" for item in (raw if isinstance(raw, list) else [raw])
            )
            key = (
                f" ({setting.name})" if "_" in setting.name else ""
            )  # the key as in the file, when the flag spells it otherwise
            return f"command line: {shown}{key}"
        if self.label == "environment":
            return f"environment {setting.env}: {setting.name} = {shlex.quote(str(raw))}"
        line = key_line(self.text, setting.name)
        try:
            shown = toml_value(raw)
        except TypeError:  # a table, a date: no value of the schema's types
            shown = repr(raw)
        return f"{self.file}" + (f" line {line}" if line else "") + f": {setting.name} = {shown}"


def key_line(text: str, key: str) -> int | None:
    """The line (1-based) where ``key`` is set in a TOML file's text. tomllib gives no positions; the
    schema's keys are all top-level, so the first line starting with the key (bare or quoted, or as a
    [table] header) is the one."""
    pattern = re.compile(rf"""^\s*(?:\[\s*)?["']?{re.escape(key)}["']?\s*[=\]]""")
    for number, line in enumerate(text.splitlines(), 1):
        if pattern.match(line):
            return number
    return None


def _parse(setting: Setting, raw: Any, layer: Layer) -> object:
    where = layer.where(setting, raw)

    def error(reason: str) -> ConfigError:
        return ConfigError(
            f"{where}: {reason}",
            source=layer.label,
            key=setting.name,
            file=layer.file,
            line=key_line(layer.text, setting.name) if layer.file else None,
        )

    if layer.is_text:
        if setting.type_name == "list":  # text: "a,b", or a repeated flag, each of which may hold "a,b"
            raw = [item for part in ([raw] if isinstance(raw, str) else raw) for item in split_list(str(part))]
    else:
        allowed = TOML_TYPES[setting.type_name]
        if not isinstance(raw, allowed) or (isinstance(raw, bool) and bool not in allowed):
            kind = TOML_KINDS.get(type(raw), type(raw).__name__)
            hint = ""
            if isinstance(raw, str) and setting.type_name != "list":
                try:  # "3" where 3 is meant: say how to write it; "x" where a number is meant: the type says enough
                    hint = f" (write it without the quotes: {setting.name} = {toml_value(setting.parse(raw))})"
                except (TypeError, ValueError):
                    pass
            raise error(
                f"expected {TOML_KINDS[allowed[-1]] if setting.type_name != 'float' else 'a number'}, not {kind}{hint}"
            )
    try:
        return setting.parse(raw)
    except (TypeError, ValueError) as exc:
        raise error(str(exc)) from None


def did_you_mean(word: str, known: Sequence[str]) -> str:
    """' (did you mean X?)' for the closest known spelling, or nothing."""
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _read_toml(path: Path, label: str) -> Layer:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Layer(label, {}, str(path))
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the configuration file: {exc.strerror or exc}", source=label, file=str(path)
        ) from None
    text = raw.decode("utf-8", errors="replace")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's own message already ends with "(at line N, column M)": the user's position.
        raise ConfigError(f"{path}: not valid TOML: {exc}", source=label, file=str(path)) from None
    for key in sorted(set(data) - set(BY_NAME)):
        line = key_line(text, key)
        where = f"{path}" + (f" line {line}" if line else "")
        raise ConfigError(
            f"{where}: unknown key {key!r}{did_you_mean(key, list(BY_NAME))}; the known keys are in --help and "
            f"--print-config",
            source=label,
            key=key,
            file=str(path),
            line=line,
        )
    return Layer(label, data, str(path), text)


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake on the command line is one line with "did you mean", not the whole usage
    (60 options) before it: raised as a ConfigError, so it is reported like every configuration error (exit 2)."""

    def error(self, message: str) -> NoReturn:
        options = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
        unknown = re.findall(r"(?<![\w-])(--[\w-]+)", message) if message.startswith("unrecognized arguments") else []
        hints = "".join(did_you_mean(word.split("=")[0], options) for word in unknown)
        if unknown:
            message = "unknown option" + ("s " if len(unknown) > 1 else " ") + " ".join(unknown) + hints
        raise ConfigError(f"command line: {message}; see {self.prog} --help", source="command line")


def build_parser(prog: str = "flipedit-previewd") -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="FlipEdit preview daemon: renders timeline frames as JPEG over HTTP, socket-activated by systemd.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective configuration with the source of each value, then exit",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    for setting in SETTINGS:
        unit = f" [{setting.unit}]" if setting.unit else ""
        default = toml_value(setting.default) if setting.default not in ("", ()) else "none"
        restart = "; restart to change" if setting.restart else ""
        listed = f"; a list: {LIST_SYNTAX}" if setting.type_name == "list" else ""
        text = f"{setting.help}{unit} (env {setting.env}; default {default}{restart}{listed})"
        if setting.type_name == "bool":
            parser.add_argument(setting.flag, dest=setting.name, nargs="?", const="true", metavar="BOOL", help=text)
        elif setting.repeatable:
            parser.add_argument(
                setting.flag, dest=setting.name, action="append", metavar=setting.name.upper(), help=text
            )
        else:
            parser.add_argument(setting.flag, dest=setting.name, metavar=setting.name.upper(), help=text)
    return parser


def check_frame_possible(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """A canvas whose full-size frame exceeds max_output_pixels would start and then answer every frame
    request 400, blaming the client: refuse it here, naming both settings and where each came from."""
    width, height, limit = values["canvas_width"], values["canvas_height"], values["max_output_pixels"]
    if width * height > limit:
        raise ConfigError(
            f"canvas_width x canvas_height = {width} x {height} = {width * height} pixels is more than "
            f"max_output_pixels = {limit}, so no full-size frame could be served; lower the canvas or raise "
            f"max_output_pixels (canvas_width from {sources['canvas_width']}, canvas_height from "
            f"{sources['canvas_height']}, max_output_pixels from {sources['max_output_pixels']})",
            source=sources["max_output_pixels"],
            key="canvas_width",
        )


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
    layers: list[Layer] = []
    if system_file is not None:
        layers.append(_read_toml(system_file, f"system file {system_file}"))
    layers.append(_read_toml(user_file, f"user file {user_file}"))
    known_env = [s.env for s in SETTINGS]
    unknown_env = sorted(key for key in environ if key.startswith(ENV_PREFIX) and key not in known_env)
    if unknown_env:
        raise ConfigError(
            f"environment: unknown variable {unknown_env[0]}{did_you_mean(unknown_env[0], known_env)}; "
            f"the known ones are the settings in --help, as {ENV_PREFIX}<KEY>",
            source="environment",
        )
    layers.append(Layer("environment", {s.name: environ[s.env] for s in SETTINGS if s.env in environ}))
    layers.append(Layer("command line", {k: v for k, v in cli.items() if k in BY_NAME}))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        values[setting.name] = setting.default
        sources[setting.name] = "default"
        for layer in layers:
            if setting.name in layer.values:
                values[setting.name] = _parse(setting, layer.values[setting.name], layer)
                sources[setting.name] = f"environment ({setting.env})" if layer.label == "environment" else layer.label
    check_frame_possible(values, sources)
    return Config(**values, sources=sources)


def from_args(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Config, argparse.Namespace]:
    namespace = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return load(vars(namespace), environ), namespace


def markdown_table() -> str:
    rows = [
        "| key / flag / env | type | default | unit | old server | meaning | on SIGHUP |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        default = list(s.default) if isinstance(s.default, tuple) else s.default
        rows.append(
            f"| `{s.name}` / `{s.flag}` / `{s.env}` | {s.type_name} | `{default!r}` | {s.unit} | {s.old_name} | "
            f"{s.help} | {s.on_reload} |"
        )
    notes = [
        "",
        f"A `list` setting: {LIST_SYNTAX.replace(chr(92) + ',', '`' + chr(92) + ',`')} (and `\\\\` for a backslash), "
        f"e.g. "
        "`FLIPEDIT_PREVIEWD_ALLOWED_ROOTS=/srv/media,/home/me/Videos` or `--allowed-roots /srv/media --allowed-roots "
        "/home/me/Videos`. "
        "Types are checked: in TOML a number is written without quotes and an `int` without a decimal point; in the "
        "environment "
        "and on the command line an `int` is digits only (`3`, not `3.0`), a `bool` is true/false/yes/no/on/off/1/0.",
    ]
    return "\n".join(rows + notes)
