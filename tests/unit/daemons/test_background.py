"""Letterhead's own background processes (the log follower, the periodic runner, the log
writer, the milter): started through the configured command, one per installation, their
PID file kept for exactly as long as they run."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
import threading

import pytest

from controlplane.daemons.background import BackgroundProcess
from controlplane.daemons.process import DaemonError, wait_until
from controlplane.settings import Settings

SLEEPER = BackgroundProcess("The test sleeper", "sleeper.pid", "sleeper.log", ("sleep",))

# Stands in for `letterhead <command> --daemon`: detaches, writes its PID file, lives on.
DETACHING = textwrap.dedent(
    """
    import os, sys, time
    run_dir = os.path.join(os.environ["LETTERHEAD_HOME"], "run")
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "sleeper.pid"), "w") as pid_file:
        pid_file.write(f"{os.getpid()}\\n")
    print("started", sys.argv[1:], flush=True)
    time.sleep(60)
    """
)


def test_start_runs_the_configured_command_and_stop_ends_it(settings: Settings) -> None:
    configured = dataclasses.replace(settings, cli_command=(sys.executable, "-c", DETACHING))
    SLEEPER.start(configured)
    pid = SLEEPER.pid(configured)
    try:
        assert pid is not None
        SLEEPER.start(configured)  # already running: nothing more is started
        assert SLEEPER.pid(configured) == pid
        assert wait_until(
            lambda: "started ['sleep']" in (settings.log_dir / "sleeper.log").read_text(), timeout=5
        )
    finally:
        SLEEPER.stop(configured)
    assert SLEEPER.pid(configured) is None  # its PID file names no living process


def test_a_command_that_fails_says_where_its_output_went(settings: Settings) -> None:
    failing = dataclasses.replace(
        settings, cli_command=(sys.executable, "-c", "print('no such command'); raise SystemExit(2)")
    )
    with pytest.raises(DaemonError) as failure:
        SLEEPER.start(failing)
    assert "The test sleeper did not start" in str(failure.value)
    assert str(settings.log_dir / "sleeper.log") in str(failure.value)
    assert "no such command" in (settings.log_dir / "sleeper.log").read_text()


def test_one_instance_per_installation_and_the_pid_file_lives_as_long_as_it_runs(settings: Settings) -> None:
    entered, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with SLEEPER.running(settings, daemon=False) as stop:
                assert not stop.is_set()
                entered.set()
                release.wait(10)
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    holder = threading.Thread(target=first)
    holder.start()
    try:
        assert entered.wait(10)
        assert (settings.run_dir / "sleeper.pid").is_file()
        with pytest.raises(DaemonError, match="already running"), SLEEPER.running(settings, daemon=False):
            pass
    finally:
        release.set()
        holder.join(10)
    assert errors == []
    assert not (settings.run_dir / "sleeper.pid").exists()
