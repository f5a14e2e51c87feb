"""Postfix's log writer keeps credentials out of log/postfix.log (daemons/postfix_log.py)."""

from __future__ import annotations

from controlplane.daemons import postfix_log
from controlplane.daemons.postfix_log import MaillogRedactor

SMTPD = "Dec 05 00:10:07 mail postfix/smtpd[13130]:"


def test_auth_keeps_only_its_mechanism_and_challenge_answers_are_redacted() -> None:
    redactor = MaillogRedactor()
    lines = [
        f"{SMTPD} < localhost[127.0.0.1]: AUTH PLAIN AGFAYgBzZWNyZXRwdw==",
        f"{SMTPD} > localhost[127.0.0.1]: 334 VXNlcm5hbWU6",
        f"{SMTPD} < localhost[127.0.0.1]: c2VjcmV0cHc=",
        f"{SMTPD} > localhost[127.0.0.1]: 503 5.5.1 Error: authentication not enabled",
        f"{SMTPD} < localhost[127.0.0.1]: QUIT",
    ]
    assert [redactor.line(line) for line in lines] == [
        f"{SMTPD} < localhost[127.0.0.1]: AUTH PLAIN [redacted]",
        f"{SMTPD} > localhost[127.0.0.1]: 334 [redacted]",
        f"{SMTPD} < localhost[127.0.0.1]: [redacted]",
        lines[3],
        lines[4],
    ]


def test_other_lines_are_written_as_logged() -> None:
    redactor = MaillogRedactor()
    lines = [
        "Dec 05 00:10:08 mail postfix/lmtp[9480]: B8F9120C127: to=<alice@a.test>, status=sent (250 2.0.0 Saved)",
        f"{SMTPD} < localhost[127.0.0.1]: MAIL FROM:<a@b.example> SIZE=100",
        f"{SMTPD} > localhost[127.0.0.1]: 250 2.1.0 Ok",
        "not a syslog line at all",
    ]
    assert [redactor.line(line) for line in lines] == lines


def test_a_challenge_answer_is_redacted_only_in_its_own_session() -> None:
    redactor = MaillogRedactor()
    other = "Dec 05 00:10:07 mail postfix/smtpd[999]:"
    redactor.line(f"{SMTPD} > localhost[127.0.0.1]: 334 UGFzc3dvcmQ6")
    assert redactor.line(f"{other} < other[192.0.2.1]: EHLO client.example").endswith("EHLO client.example")
    assert redactor.line(f"{SMTPD} < localhost[127.0.0.1]: cGFzc3dvcmQ=").endswith(": [redacted]")


def test_words_the_trace_echoes_in_its_own_lines_are_redacted_until_the_session_ends() -> None:
    redactor = MaillogRedactor()
    redactor.line(f"{SMTPD} < localhost[127.0.0.1]: AUTH LOGIN c2VjcmV0Lw==")
    echoed = redactor.line(f"{SMTPD} match_list_match: c2VjcmV0Lw==: no match")
    assert "c2VjcmV0Lw==" not in echoed and echoed.endswith("match_list_match: [redacted]: no match")
    redactor.line(f"{SMTPD} disconnect from localhost[127.0.0.1] ehlo=1 auth=0/1 commands=1/2")
    # A later session of the same process starts clean (nothing of it is redacted by mistake).
    assert redactor.line(f"{SMTPD} match_list_match: c2VjcmV0Lw==: no match").endswith(
        "c2VjcmV0Lw==: no match"
    )


def test_a_line_the_redactor_fails_on_is_withheld_and_the_writer_goes_on() -> None:
    class Broken(postfix_log.MaillogRedactor):
        def line(self, line: str) -> str:
            raise IndexError("a line no one foresaw")

    line = "Dec 06 14:00:57 mail postfix/smtpd[7600]: < client.test[192.0.2.1]: AUTH PLAIN c2VjcmV0"
    withheld = postfix_log._redacted(Broken(), line)
    assert withheld == "Dec 06 14:00:57 mail postfix/smtpd[7600]: [line withheld: it could not be checked]"
    assert (
        postfix_log._redacted(Broken(), "AUTH PLAIN c2VjcmV0") == ": [line withheld: it could not be checked]"
    )
    assert postfix_log._redacted(postfix_log.MaillogRedactor(), "plain line") == "plain line"


def test_a_failure_that_repeats_is_retried_with_a_pause_and_logged_only_a_few_times(
    monkeypatch, caplog
) -> None:
    attempts: list[int] = []
    pauses: list[float] = []

    def failing_then_done(*_args) -> None:
        attempts.append(1)
        if len(attempts) < 10:
            raise OSError("the same failure every time")

    monkeypatch.setattr(postfix_log, "_copy_lines", failing_then_done)
    monkeypatch.setattr(postfix_log, "_drop_lines_for", lambda _socket, seconds: pauses.append(seconds))
    postfix_log._copy_lines_until_postfix_stops(None, 0, None, None)

    assert len(attempts) == 10
    # The first failure is retried at once (one batch lost); the ones that follow at once wait.
    assert pauses == [postfix_log.RETRY_PAUSE_SECONDS] * 8
    traces = [record for record in caplog.records if record.exc_info]
    assert len(traces) == 3
    assert any("keeps failing" in record.getMessage() for record in caplog.records)


def test_the_pause_reads_and_drops_what_postfix_sends_meanwhile(tmp_path) -> None:
    """Postfix's programs wait in send() once the socket's queue is full: a pause that did not
    read would hold up the mail."""
    import socket

    log_socket = postfix_log.bind_log_socket(tmp_path / "queue")
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        for number in range(5):
            sender.sendto(f"line {number}".encode(), str(postfix_log.log_socket_path(tmp_path / "queue")))
        postfix_log._drop_lines_for(log_socket, 0.2)
        assert postfix_log._waiting_datagrams(log_socket) == []
    finally:
        sender.close()
        log_socket.close()


def test_a_log_folder_that_cannot_be_opened_costs_the_batch_and_is_tried_again(tmp_path, caplog) -> None:
    folder = tmp_path / "log"
    folder.mkdir()
    log_file = postfix_log._LogFile(folder / "postfix.log")
    (folder / "postfix.log").unlink()
    folder.rmdir()
    log_file.write("lost one\n")
    log_file.write("lost two\n")
    assert sum(1 for record in caplog.records if record.exc_info) == 1, "said once per spell"
    folder.mkdir()
    log_file.write("kept\n")
    log_file.close()
    assert (folder / "postfix.log").read_text() == "kept\n"
