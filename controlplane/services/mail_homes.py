"""Work on a mailbox's home that must happen on the mail node holding it.

A mailbox's home (mail_root/<storage_key>: its Maildir, its admin filter) lies on the disk of
one node (models/node.py). Mail and logins reach it through Dovecot's proxying, but the admin
panel, the API and the CLI act on whichever node the request arrived at. What they do to a home
on another node goes through the shared database: the asker writes a `node_task`, the holding
node's sync (runners/node_sync.py) runs it within a fraction of a second and writes the result,
and the asker reads it and deletes the row. No node listens for another: the database's
logins are the only door, as for everything else they share.

- Filters (services/sieve.py) wait for the answer, so the admin sees the same result and the
  same errors as on one machine. A node that does not answer in time has its task withdrawn,
  and the admin is told that nothing changed.
- A deleted mailbox's mail is removed by its node once the deletion is committed: that task is
  written in the deleting transaction, so a deletion rolled back removes nothing.

On a single machine (no `node_name`) every home is local and nothing here writes a row.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controlplane.daemons import sieve_files
from controlplane.daemons.process import DaemonError
from controlplane.errors import NodeUnavailable
from controlplane.models import Node, NodeTask
from controlplane.models.base import utcnow
from controlplane.settings import Settings

ANSWER_WAIT_SECONDS = 20.0
ANSWER_POLL_SECONDS = 0.05
# A finished task nobody collected (its asker died waiting) is dropped after this long.
UNCOLLECTED = dt.timedelta(hours=1)

REMOVE_MAIL = "remove_mail"
INSTALL_ADMIN_FILTER = "install_admin_filter"
READ_ADMIN_FILTER = "read_admin_filter"
REMOVE_ADMIN_FILTER = "remove_admin_filter"


def find_node_id(session: Session, name: str) -> int | None:
    return session.scalar(select(Node.id).where(Node.name == name)) if name else None


def held_elsewhere(session: Session, this_node: str, node_id: int | None) -> bool:
    """Whether a home held by `node_id` lies on another machine's disk than this one (named
    `this_node`, "" on a single machine or a host that is not a node, such as an operator's
    CLI on the database server: every held home is elsewhere for it)."""
    return node_id is not None and elsewhere(node_id, find_node_id(session, this_node))


def elsewhere(node_id: int | None, this_node_id: int | None) -> bool:
    """The same, with this node's id looked up once (for many homes at a time)."""
    return node_id is not None and node_id != this_node_id


def ask(session: Session, node_id: int, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Have the node run the operation and return its result. Raises NodeUnavailable.

    The task is committed in a session of its own, so the holding node sees it while the
    caller's transaction stays open (and its changes unseen) until the caller commits. Nodes
    share PostgreSQL only, where that open transaction does not stop this one committing.
    """
    with Session(session.get_bind()) as own:
        task = NodeTask(node_id=node_id, operation=operation, payload=payload)
        own.add(task)
        own.commit()
        task_id = task.id
        deadline = time.monotonic() + ANSWER_WAIT_SECONDS
        try:
            while time.monotonic() < deadline:
                own.expire_all()
                result = own.scalar(
                    select(NodeTask.result).where(NodeTask.id == task_id, NodeTask.finished_at.is_not(None))
                )
                if result is not None:
                    return result
                own.rollback()  # a fresh snapshot for the next look
                time.sleep(ANSWER_POLL_SECONDS)
            # Withdrawn, unless the node took it meanwhile: then its answer is the one to give.
            withdrawn = own.execute(
                delete(NodeTask).where(NodeTask.id == task_id, NodeTask.finished_at.is_(None))
            ).rowcount
            own.commit()
            result = None if withdrawn else own.scalar(select(NodeTask.result).where(NodeTask.id == task_id))
            if result is None:
                name = own.scalar(select(Node.name).where(Node.id == node_id))
                raise NodeUnavailable(
                    f"The mail node that holds this mailbox ({name}) did not answer; nothing was changed there."
                )
            return result
        finally:
            own.execute(delete(NodeTask).where(NodeTask.id == task_id))
            own.commit()


def remove_mail_after_commit(session: Session, node_id: int, storage_key: str) -> None:
    """Have the holding node remove a deleted mailbox's home once this transaction commits."""
    session.add(NodeTask(node_id=node_id, operation=REMOVE_MAIL, payload={"storage_key": storage_key}))


# --- on the holding node -------------------------------------------------------------------------


def _remove_mail(settings: Settings, payload: dict[str, Any]) -> dict[str, Any]:
    home = sieve_files.mailbox_home(settings.mail_root, payload["storage_key"])
    shutil.rmtree(home, ignore_errors=True)
    return {}


def _install_admin_filter(settings: Settings, payload: dict[str, Any]) -> dict[str, Any]:
    from controlplane.daemons.layout import vmail_account

    account = vmail_account(settings)
    failed: dict[str, str] = {}
    for storage_key in payload["storage_keys"]:
        try:
            sieve_files.install_admin_script(
                settings.mail_root, storage_key, payload["name"], payload["script"].encode(),
                (account.uid, account.gid),
            )  # fmt: skip
        except OSError as error:
            failed[storage_key] = error.strerror or error.__class__.__name__
        except DaemonError as error:
            failed[storage_key] = str(error)
    return {"failed": failed}


def _read_admin_filter(settings: Settings, payload: dict[str, Any]) -> dict[str, Any]:
    home = sieve_files.mailbox_home(settings.mail_root, payload["storage_key"])
    found = sieve_files.admin_script(home, payload["limit"])
    if found is None:
        return {"found": False}
    name, data = found
    return {"found": True, "name": name, "script": data.decode("utf-8", errors="replace")}


def _remove_admin_filter(settings: Settings, payload: dict[str, Any]) -> dict[str, Any]:
    home = sieve_files.mailbox_home(settings.mail_root, payload["storage_key"])
    found = sieve_files.admin_script(home, 256)
    try:
        removed = sieve_files.remove_admin_script(home)
    except OSError as error:
        return {"error": error.strerror or error.__class__.__name__}
    return {"removed": removed, "name": found[0] if found else ""}


OPERATIONS: dict[str, Callable[[Settings, dict[str, Any]], dict[str, Any]]] = {
    REMOVE_MAIL: _remove_mail,
    INSTALL_ADMIN_FILTER: _install_admin_filter,
    READ_ADMIN_FILTER: _read_admin_filter,
    REMOVE_ADMIN_FILTER: _remove_admin_filter,
}


def run_next_task(session: Session, settings: Settings) -> bool:
    """Run the oldest open task asked of this node, an admin's before any mail removal (nobody
    waits for those); the caller commits, so each task's result is committed on its own and a
    failing one costs no other. Several processes never take the same task. Returns whether
    there was one."""
    node_id = find_node_id(session, settings.node_name)
    if node_id is None:
        return False
    task = session.scalars(
        select(NodeTask)
        .where(NodeTask.node_id == node_id, NodeTask.finished_at.is_(None))
        .order_by(NodeTask.operation == REMOVE_MAIL, NodeTask.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if task is None:
        return False
    operation = OPERATIONS.get(task.operation)
    try:
        task.result = operation(settings, task.payload) if operation else {"error": "unknown operation"}
    except (OSError, KeyError, TypeError, ValueError, DaemonError) as error:
        task.result = {"error": str(error) or error.__class__.__name__}
    task.finished_at = utcnow()
    if task.operation == REMOVE_MAIL:
        session.delete(task)  # nobody waits for it
    return True


def drop_uncollected(session: Session, settings: Settings) -> None:
    """Answers nobody collected (the asker died waiting), after an hour."""
    node_id = find_node_id(session, settings.node_name)
    session.execute(
        delete(NodeTask).where(
            NodeTask.node_id == node_id,
            NodeTask.finished_at.is_not(None),
            NodeTask.finished_at < utcnow() - UNCOLLECTED,
        )
    )
