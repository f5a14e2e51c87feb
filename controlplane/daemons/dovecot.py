"""The private Dovecot instance, addressed by its config file (`-c`)."""

from __future__ import annotations

from pathlib import Path

from controlplane.daemons.process import DaemonError, output_of, read_pid, run_tool, wait_until

DOVECOT = "/usr/sbin/dovecot"
DOVECONF = "/usr/bin/doveconf"
DOVEADM = "/usr/bin/doveadm"
SHELL = "/bin/sh"
# Rendered beside dovecot.conf; the quota-warning service runs it with SHELL.
QUOTA_WARNING_SCRIPT = "quota-warning.sh"
SIEVEC = "/usr/bin/sievec"
# Beside dovecot.conf: the administrator's Sieve scripts and the programs they may pipe to.
SIEVE_FOLDER = "sieve"
SIEVE_PIPE_FOLDER = "sieve-pipe"
# `doveadm auth test` exit status when auth answered "no": auth is up.
AUTH_FAILED = 77


def check_config(config_file: Path) -> None:
    """`doveadm reload` and `doveconf -n` accept broken configs; `doveconf -x` reads every
    included and `<file` (certificates too) and fails on what is wrong."""
    result = run_tool([DOVECONF, "-c", str(config_file), "-x"])
    if result.returncode != 0 or result.stderr.strip():
        raise DaemonError(f"Dovecot refused the configuration:\n{output_of(result) or 'doveconf failed'}")
    check_quota_warning_script(config_file.parent / QUOTA_WARNING_SCRIPT)
    for program in sorted((config_file.parent / SIEVE_PIPE_FOLDER).glob("*.sh")):
        check_shell_script(program, "The Sieve pipe program")
    compile_global_sieve_scripts(config_file)


def compile_global_sieve_scripts(config_file: Path) -> None:
    """Compile the administrator's Sieve scripts with this configuration (its extensions): a
    script that does not compile is refused here, and the binaries sit beside the scripts,
    where Dovecot (running as the storage account) could not write them."""
    for script in sorted((config_file.parent / SIEVE_FOLDER).glob("*.sieve")):
        result = run_tool([SIEVEC, "-c", str(config_file), str(script)])
        if result.returncode != 0:
            raise DaemonError(f"The Sieve script {script.name} does not compile:\n{output_of(result)}")


def check_quota_warning_script(script: Path) -> None:
    """doveconf never reads the script its quota-warning service runs: the shell checks it."""
    check_shell_script(script, "The quota warning script")


def check_shell_script(script: Path, title: str) -> None:
    result = run_tool([SHELL, "-n", str(script)])
    if result.returncode != 0 or result.stderr.strip():
        raise DaemonError(f"{title} {script} is broken:\n{output_of(result) or 'sh -n failed'}")


def master_pid(base_dir: Path) -> int | None:
    return read_pid(base_dir / "master.pid")


def start(config_file: Path) -> None:
    result = run_tool([DOVECOT, "-c", str(config_file)], starts_daemon=True)
    if result.returncode != 0:
        raise DaemonError(f"Dovecot did not start: {output_of(result) or 'no message'}")


def auth_answers(config_file: Path) -> bool:
    result = run_tool(
        [DOVEADM, "-c", str(config_file), "auth", "test", "probe@probe.invalid", "not-a-password"], timeout=10
    )
    return result.returncode in (0, AUTH_FAILED)


def wait_ready(config_file: Path, timeout: float = 15) -> None:
    """Postfix's submission service dies and is throttled if Dovecot auth is not up yet."""
    if not wait_until(lambda: auth_answers(config_file), timeout=timeout, interval=0.1):
        raise DaemonError(f"Dovecot auth did not answer within {timeout:.0f} s; see dovecot.log.")


def stop(config_file: Path) -> None:
    result = run_tool([DOVEADM, "-c", str(config_file), "stop"])
    if result.returncode != 0 and "not running" not in output_of(result).lower():
        raise DaemonError(f"Dovecot did not stop: {output_of(result)}")


def reload(config_file: Path) -> None:
    result = run_tool([DOVEADM, "-c", str(config_file), "reload"], starts_daemon=True)
    if result.returncode != 0:
        raise DaemonError(f"Dovecot did not reload: {output_of(result) or 'no message'}")


def backup_mailbox(config_file: Path, user: str, destination: Path) -> None:
    """`doveadm backup` of `user`'s mail into a Maildir at `destination` (which the storage user
    may write): dsync copies a consistent view of each folder while mail keeps arriving, with its
    flags, dates and UIDs."""
    # Without the mail plugins: the quota plugins would count the copy as the user's mail (the
    # usage Postfix refuses full mailboxes by) and might send a quota warning.
    result = run_tool(
        [
            DOVEADM,
            "-c",
            str(config_file),
            "-o",
            "mail_plugins=",
            "backup",
            "-u",
            user,
            f"maildir:{destination}",
        ],
        timeout=3600,
    )
    if result.returncode != 0:
        raise DaemonError(f"doveadm backup of {user} failed: {output_of(result) or 'no message'}")
