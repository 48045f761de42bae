"""previewctl's pure parts: time specs, the stats summary, argument errors."""

from __future__ import annotations

import io
from datetime import datetime

import pytest

from flipedit_previewd.common.journal import MESSAGE_IDS
from flipedit_previewd.ctl import main
from flipedit_previewd.ctl.cmd_monitor import sparkline
from flipedit_previewd.ctl.context import Env
from flipedit_previewd.ctl.healthview import bar, health_rows
from flipedit_previewd.ctl.journal_read import BadTime, parse_time
from flipedit_previewd.ctl.stats import summarise

NOW = datetime(2026, 11, 28, 12, 0, 0)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("1 hour ago", datetime(2026, 11, 28, 11, 0, 0)),
        ("-30min", datetime(2026, 11, 28, 11, 30, 0)),
        ("today", datetime(2026, 11, 28)),
        ("yesterday", datetime(2026, 11, 27)),
        ("2026-11-01 10:20:30", datetime(2026, 11, 1, 10, 20, 30)),
        ("09:15", datetime(2026, 11, 28, 9, 15)),
    ],
)
def test_journalctl_time_formats(spec: str, expected: datetime) -> None:
    assert parse_time(spec, NOW) == expected.astimezone()


def test_bad_time_is_an_error() -> None:
    with pytest.raises(BadTime):
        parse_time("whenever", NOW)


def entry(minute: int, event: str, **fields: object) -> dict[str, object]:
    return {"__REALTIME_TIMESTAMP": datetime(2026, 11, 28, 12, minute, 0), "MESSAGE_ID": MESSAGE_IDS[event], **fields}


def test_summary_counts_percentiles_worst_minute_and_restarts() -> None:
    entries = [entry(0, "start"), entry(0, "ready")]
    entries += [
        entry(1, "request", OUTCOME="rendered", TOTAL_MS=str(v), QUEUE_MS="1", RENDER_MS=str(v - 1))
        for v in range(10, 110)
    ]
    entries += [entry(2, "overload_began")] + [
        entry(2, "request", OUTCOME="rejected", TOTAL_MS="0.5") for _ in range(7)
    ]
    entries += [entry(3, "overload_ended", DURATION_S="60"), entry(4, "watchdog_withheld"), entry(4, "start")]
    entries += [entry(5, "summary", COUNT_CACHED="40")]
    summary = summarise(entries)
    assert summary["outcomes"] == {"cached": 40, "rejected": 7, "rendered": 100}
    assert summary["total_ms"]["count"] == 107
    assert summary["render_ms"]["p50"] == pytest.approx(58.5, abs=0.6)
    assert summary["worst_minute"]["minute"] == "2026-11-28 12:02" and summary["worst_minute"]["not_served"] == 7
    assert len(summary["overload_periods"]) == 1 and summary["restarts"] == 1 and summary["watchdog_withheld"] == 1


def test_usage_error_exit_code_and_one_line() -> None:
    err = io.StringIO()
    env = Env(io.StringIO(), err, {}, False, False)
    assert main(["render", "not-a-number"], env) == 3
    assert err.getvalue().count("\n") == 1 and "previewctl render --help" in err.getvalue()


def test_bars_and_sparklines() -> None:
    assert bar(5, 20, 10).startswith("[##........]") and bar(0, 0).endswith("0/0")
    assert sparkline([0, 5, 10]) == " ▄█"


def test_epoch_and_the_hint_for_a_bare_duration() -> None:
    from datetime import UTC

    assert parse_time("@1700000000", NOW) == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    with pytest.raises(BadTime, match=r"'1h ago' \(or --since=-1h\)"):
        parse_time("1h", NOW)
    err = io.StringIO()
    assert main(["logs", "--since=-1h", "-D", "/nonexistent-journal"], Env(io.StringIO(), err, {}, False, False)) == 1
    assert "no journal found (looked in /nonexistent-journal)" in err.getvalue()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.25, "250ms"),
        (12.5, "12.5s"),
        (42, "42s"),
        (243, "4min 3s"),
        (7500, "2h 5min"),
        (3 * 86400 + 4 * 3600, "3d 4h"),
        ("junk", "-"),
    ],
)
def test_durations_read_like_systemctl(seconds: object, text: str) -> None:
    from flipedit_previewd.ctl.words import duration

    assert duration(seconds) == text


def test_journal_values_become_json_types() -> None:
    import json
    import uuid
    from datetime import timedelta

    from flipedit_previewd.ctl.journal_read import as_json
    from systemd import journal

    entry = {
        "__MONOTONIC_TIMESTAMP": journal.Monotonic((timedelta(seconds=3.5), uuid.uuid4())),
        "_BOOT_ID": uuid.uuid4(),
        "__REALTIME_TIMESTAMP": datetime(2026, 11, 28, 12, 0),
        "PRIORITY": 6,
        "MESSAGE_ID": uuid.UUID(MESSAGE_IDS["ready"]),
    }
    out = as_json(entry)
    assert out["__MONOTONIC_TIMESTAMP"] == 3.5 and out["EVENT"] == "ready" and isinstance(out["_BOOT_ID"], str)
    assert json.loads(json.dumps(out)) == out and "Monotonic" not in json.dumps(out)


def test_health_names_settings_waiting_for_a_restart_and_only_then() -> None:
    """After a SIGHUP that changed a restart-only setting (e.g. workers), /health's restart_pending names it:
    the operator reading `previewctl health` must learn that the running value is not the configured one."""
    base = {"status": "ok", "pid": 1, "restart_pending": []}
    assert not [label for label, _ in health_rows(base) if label == "restart"]
    rows = dict(health_rows({**base, "restart_pending": ["workers", "listen"]}))
    assert "workers, listen" in rows["restart"] and "restart flipedit-preview" in rows["restart"]
    assert "restart" not in dict(health_rows({**base, "restart_pending": "workers"}))  # a hostile shape: ignored


# --- issue 26: previewctl as operators expect -------------------------------------------------------


def ctl_run(*argv: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), Env(out, err, environ or {}, False, False, sleep=lambda s: None))
    return code, out.getvalue(), err.getvalue()


DEAD = "http://127.0.0.1:9"  # discard port: connection refused


def test_one_output_vocabulary_logs_takes_o_text_and_the_old_short() -> None:
    for word in ("text", "short", "json"):
        code, _, err = ctl_run("logs", "-o", word, "-D", "/nonexistent-journal")
        assert code == 1 and "no journal found" in err, (word, err)  # not a usage error: the words are accepted


def test_render_o_with_a_file_name_points_at_O() -> None:
    code, out, err = ctl_run("--url", DEAD, "render", "5", "-o", "x.png")
    assert code == 3 and "-O x.png" in err and not out


def test_render_format_from_the_extension_or_format() -> None:
    from flipedit_previewd.ctl.cmd_render import target
    from flipedit_previewd.ctl.context import CtlError

    assert target("x.png", None) == ("x.png", "png") and target("x.JPG", None) == ("x.JPG", "jpeg")
    assert target(None, None) == ("frame.jpg", "jpeg") and target(None, "png") == ("frame.png", "png")
    assert target("-", "png") == ("-", "png") and target("out.bin", "png") == ("out.bin", "png")
    for name, fmt in (("x.png", "jpeg"), ("x.webp", None)):
        with pytest.raises(CtlError) as raised:
            target(name, fmt)
        assert raised.value.code == 3


def test_json_stays_json_when_the_daemon_is_down() -> None:
    import json

    code, out, err = ctl_run("--url", DEAD, "health", "-o", "json")
    assert code == 2 and json.loads(out)["status"] == "unreachable" and "unreachable" in err
    for args in (
        ["render", "5", "-o", "json", "-O", "/nonexistent-dir/f.jpg"],
        ["profile", "--json"],
        ["timeline", "get", "--json"],
    ):
        code, out, _ = ctl_run("--url", DEAD, *args)
        assert code in (1, 2) and json.loads(out)["exit_code"] == code, (args, out)


def test_monitor_exits_2_when_every_sample_failed() -> None:
    code, out, _ = ctl_run("--url", DEAD, "monitor", "--count", "2")
    assert code == 2 and out.count("unreachable") == 2


def test_version_and_did_you_mean() -> None:
    from flipedit_previewd import __version__

    assert ctl_run("--version")[:2] == (0, f"previewctl {__version__}\n")
    code, _, err = ctl_run("helth")
    assert code == 3 and "did you mean 'health'?" in err and err.count("\n") == 1
    code, _, err = ctl_run("health", "-o", "jsno")
    assert code == 3 and "did you mean 'json'?" in err
    assert "did you mean" not in ctl_run("xyzzy")[2]


def test_completion_scripts_for_bash_zsh_fish() -> None:
    import subprocess

    code, bash, _ = ctl_run("completion", "bash")
    assert code == 0
    done = subprocess.run(
        ["bash", "-c", 'eval "$1"; complete -p previewctl', "-", bash], capture_output=True, text=True
    )
    assert done.returncode == 0 and "previewctl" in done.stdout, done.stderr
    assert ctl_run("completion", "zsh")[1].startswith("#compdef previewctl")
    fish = ctl_run("completion", "fish")[1]
    assert "complete -c previewctl" in fish and "timeline" in fish and "completion" in fish
    assert ctl_run("completion", "tcsh")[0] == 3


def test_since_after_until_is_refused_like_journalctl() -> None:
    for command in ("logs", "stats", "doctor"):
        code, _, err = ctl_run(command, "--since", "today", "--until", "yesterday", "-D", "/nonexistent-journal")
        assert code == 3 and "is after --until yesterday" in err, (command, err)


def test_health_lines_fit_80_columns() -> None:
    from flipedit_previewd.ctl.healthview import render_health

    counters = {f"a_rather_long_counter_name_{i}": 10**i for i in range(12)}
    health = {
        "status": "ok",
        "pid": 1,
        "counters": counters,
        "restart_pending": ["workers", "listen", "queue_size"],
        "project": {"path": "/home/someone/Documents/project.sqlite", "state": "ok"},
    }
    lines = render_health(health)
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert all(f"{k}={v}" in "\n".join(lines) for k, v in counters.items())  # wrapped, nothing dropped


def test_tcp_fallback_warns_only_when_a_unix_socket_was_expected(tmp_path: object) -> None:
    from pathlib import Path

    from flipedit_previewd.ctl.discovery import DaemonClient, Unreachable

    runtime = Path(str(tmp_path))
    said: list[str] = []
    client = DaemonClient(None, {"XDG_RUNTIME_DIR": str(runtime)}, timeout=0.5, warn=said.append)
    client.targets = client.targets[:-1] + [type(client.targets[-1])(DEAD, resilient=False, timeout=0.5)]  # not 8081
    with pytest.raises(Unreachable):
        client.health()
    assert said == []  # no socket anywhere: a daemon run by hand on its port, nothing wrong
    (runtime / "flipedit-preview.sock").write_text("not a socket")
    client = DaemonClient(None, {"XDG_RUNTIME_DIR": str(runtime)}, timeout=0.5, warn=said.append)
    client.targets = client.targets[:-1] + [type(client.targets[-1])(DEAD, resilient=False, timeout=0.5)]
    with pytest.raises(Unreachable):
        client.health()
    assert len(said) == 1 and "not a socket" in said[0] and "falling back" in said[0]


def test_a_timeout_is_reported_as_a_timeout() -> None:
    import socket

    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        code, _, err = ctl_run("--url", url, "--timeout", "0.3", "health")
        assert code == 2 and "did not answer within --timeout 0.3 s" in err and "start it" not in err, err
        code, out, _ = ctl_run("--url", url, "--timeout", "0.3", "status")
        assert "health      timeout" in out


def test_advice_fits_how_the_daemon_runs(tmp_path: object) -> None:
    from pathlib import Path

    from flipedit_previewd.ctl.healthview import project_line
    from flipedit_previewd.ctl.running import Running, how_run

    proc = Path(str(tmp_path))

    def process(pid: int, cgroup: str, argv: list[str], environ: list[str]) -> int:
        (proc / str(pid)).mkdir()
        (proc / str(pid) / "cgroup").write_text(f"0::{cgroup}\n")
        (proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
        (proc / str(pid) / "environ").write_bytes(b"\0".join(e.encode() for e in environ))
        return pid

    user = process(
        10,
        "/user.slice/user-1000.slice/user@1000.service/app.slice/flipedit-preview.service",
        ["flipedit-previewd"],
        ["INVOCATION_ID=x"],
    )
    hand = process(
        11, "/user.slice/user-1000.slice/session-2.scope", ["flipedit-previewd", "--demo", "--listen", "x"], ["HOME=/h"]
    )
    assert how_run(user, str(proc)).manager == "user" and how_run(hand, str(proc)).manager == "hand"
    assert how_run(99, str(proc)).manager == "unknown"
    pending = {"status": "ok", "pid": 1, "restart_pending": ["workers"]}
    by_hand = dict(health_rows(pending, running=how_run(hand, str(proc))))["restart"]
    assert "systemctl" not in by_hand and "start it again" in by_hand
    assert (
        "systemctl --user restart flipedit-preview"
        in dict(health_rows(pending, running=how_run(user, str(proc))))["restart"]
    )
    demo = project_line({"path": "/d/demo.sqlite", "state": "ok", "following": None}, how_run(hand, str(proc)))
    assert "--demo" in demo and "--project" not in demo
    assert "pinned by --project" in project_line({"path": "/p", "state": "ok"}, Running("hand", ("x", "--project=/p")))


def test_stats_says_what_the_next_summary_will_add() -> None:
    from flipedit_previewd.ctl.stats import pending_counts

    found = [
        entry(0, "start"),
        entry(1, "request", OUTCOME="rendered", TOTAL_MS="5"),
        entry(5, "summary", COUNT_CACHED="4"),
    ]
    live = pending_counts(
        found, {"status": "ok", "counters": {"outcome_cached": 40, "outcome_not_modified": 1, "outcome_health": 9}}
    )
    assert live is not None and live["from_health"] == {"cached": 40, "not_modified": 1}
    assert live["note"].startswith("last summary at 12:05; 41 requests since (from /health: cached=40  not_modified=1)")
    down = pending_counts(found, None)
    assert down is not None and "did not answer" in down["note"] and down["from_health"] is None
    assert pending_counts(found[:2], None) is None
