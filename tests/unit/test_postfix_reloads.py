"""Who reloads Postfix after a domain change, and when (daemons/postfix_reloads.py).

The reload itself is Postfix's (tests/e2e/test_postfix_reloads.py runs it for real); these tests
drive the bookkeeping around it through the races a busy node meets, with the reload counted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from controlplane.daemons import postfix, postfix_reloads
from controlplane.daemons.process import DaemonError
from controlplane.settings import Settings, load_settings

SPACING = 30.0


class Node:
    """A node's reload bookkeeping with Postfix's reload counted and the due process's start
    recorded (its lock kept here, as the process would hold it)."""

    def __init__(self, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.settings: Settings = load_settings({}, home=str(home), postfix_reload_spacing_seconds=SPACING)
        self.settings.live_config.mkdir(parents=True)
        self.reloads = 0
        self.due_locks: list[int] = []
        monkeypatch.setattr(postfix, "master_pid", lambda _queue: 4242)
        monkeypatch.setattr(postfix, "reload", self._count)
        monkeypatch.setattr(postfix_reloads, "_start_due_process", self._keep_due_lock)

    def _count(self, _config: Path) -> None:
        self.reloads += 1

    def _keep_due_lock(self, _settings: Settings, due_lock: int) -> None:
        self.due_locks.append(os.dup(due_lock))

    def spell_ended(self) -> None:
        last = self.settings.run_dir / postfix_reloads.LAST_RELOAD
        past = time.time() - SPACING - 1
        os.utime(last, (past, past))

    def run_due_process(self) -> None:
        """The due process at the end of its wait (the wait itself skipped)."""
        self.spell_ended()
        postfix_reloads.run_due_reload(self.settings, self.due_locks.pop(), SPACING)


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Node:
    return Node(tmp_path, monkeypatch)


def test_the_first_change_reloads_at_once_and_the_next_ones_share_one_due_reload(node: Node) -> None:
    postfix_reloads.request_reload(node.settings)
    assert node.reloads == 1
    for _ in range(5):
        postfix_reloads.request_reload(node.settings)
    assert node.reloads == 1
    assert len(node.due_locks) == 1, "one due process for the whole spell"
    node.run_due_process()
    assert node.reloads == 2
    assert not (node.settings.run_dir / postfix_reloads.OWED).exists()


def test_a_change_made_while_a_change_reloads_at_the_spells_end_still_gets_its_reload(node: Node) -> None:
    """The due process is late; a change at the spell's end reloads at once, and one more change
    comes right after it, finds the due process alive and leaves the reload to it."""
    postfix_reloads.request_reload(node.settings)
    postfix_reloads.request_reload(node.settings)
    assert (node.reloads, len(node.due_locks)) == (1, 1)
    node.spell_ended()
    postfix_reloads.request_reload(node.settings)  # at once: the spell is over
    postfix_reloads.request_reload(node.settings)  # leaves it to the due process, still alive
    assert node.reloads == 2
    assert len(node.due_locks) == 1
    node.run_due_process()
    assert node.reloads == 3


def test_the_due_process_reloads_nothing_when_no_change_waits(node: Node) -> None:
    postfix_reloads.request_reload(node.settings)
    postfix_reloads.request_reload(node.settings)
    node.spell_ended()
    postfix_reloads.request_reload(node.settings)  # at once, for both
    node.run_due_process()
    assert node.reloads == 2


def test_a_reload_owed_by_a_due_process_that_died_is_made_by_the_periodic_check(node: Node) -> None:
    postfix_reloads.request_reload(node.settings)
    postfix_reloads.request_reload(node.settings)
    os.close(node.due_locks.pop())  # the due process killed with its service
    postfix_reloads.reload_if_owed(node.settings)
    assert node.reloads == 1, "still inside the spell: made due again"
    assert len(node.due_locks) == 1
    os.close(node.due_locks.pop())
    node.spell_ended()
    postfix_reloads.reload_if_owed(node.settings)
    assert node.reloads == 2
    postfix_reloads.reload_if_owed(node.settings)
    assert node.reloads == 2, "nothing owed any more"


def test_nothing_is_reloaded_or_owed_while_postfix_is_stopped(node: Node, monkeypatch) -> None:
    monkeypatch.setattr(postfix, "master_pid", lambda _queue: None)
    postfix_reloads.request_reload(node.settings)
    assert node.reloads == 0
    assert not (node.settings.run_dir / postfix_reloads.OWED).exists()


def test_a_reload_that_failed_is_still_owed_and_made_by_the_periodic_check(node: Node, monkeypatch) -> None:
    def refused(_config: Path) -> None:
        raise DaemonError("postfix/postfix-script: fatal: the Postfix mail system is not running")

    monkeypatch.setattr(postfix, "reload", refused)
    with pytest.raises(DaemonError):
        postfix_reloads.request_reload(node.settings)
    assert (node.settings.run_dir / postfix_reloads.OWED).exists()

    monkeypatch.setattr(postfix, "reload", node._count)
    postfix_reloads.reload_if_owed(node.settings)  # within the spell of the failed attempt
    assert node.reloads == 0 and len(node.due_locks) == 1
    node.run_due_process()
    assert node.reloads == 1
    assert not (node.settings.run_dir / postfix_reloads.OWED).exists()
