"""The TLS-report spool as root reads what the mail account (and whoever sends mail) put there:
one bad message never stops the ones after it, a link is never followed, and a report mailed
twice is kept once."""

from __future__ import annotations

import gzip
import json
import os
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import func, select

from controlplane.models import TlsReport
from controlplane.runners import tls_report_spool
from controlplane.runtime import Installation
from tests.factories import make_domain


def report_mail(report_id: str, domain: str = "spooled.test") -> bytes:
    document = {
        "organization-name": "Sender", "report-id": report_id,
        "date-range": {"start-datetime": "2026-12-05T00:00:00Z", "end-datetime": "2026-12-05T23:59:59Z"},
        "policies": [{"policy": {"policy-type": "sts", "policy-domain": domain},
                      "summary": {"total-successful-session-count": 5, "total-failure-session-count": 0}}],
    }  # fmt: skip
    message = EmailMessage()
    message.set_content("report")
    message.add_attachment(gzip.compress(json.dumps(document).encode()), maintype="application",
                           subtype="tlsrpt+gzip", filename="r.json.gz")  # fmt: skip
    return message.as_bytes()


def test_bad_messages_are_set_aside_and_good_ones_around_them_kept(installation: Installation) -> None:
    with installation.transaction() as session:
        make_domain(session, name="spooled.test")
    spool = installation.settings.tls_report_spool
    spool.mkdir(parents=True)
    (spool / "A1").write_bytes(report_mail("one"))
    (spool / "B2").write_bytes(b"not a report at all")
    secret = spool.parent / "secret.txt"
    secret.write_text("root's")
    os.symlink(secret, spool / "C3")  # the mail account pointing root at another file
    (spool / "D4").write_bytes(report_mail("one"))  # the same report, mailed again
    (spool / "E5.part").write_bytes(b"half written")

    said = tls_report_spool.read_spool(installation)

    assert said[0] == "TLS report A1 kept for spooled.test"
    assert said[1].startswith("TLS report B2 refused: The message carries no TLS report")
    assert said[2].startswith("Report C3 refused: It could not be opened")
    assert said[3] == "TLS report D4 was kept before: nothing new"
    assert len(said) == 4
    refused = sorted(path.name for path in (spool.parent / "tls-refused").iterdir())
    assert refused == ["B2", "C3"]
    assert sorted(path.name for path in spool.iterdir()) == ["E5.part"]  # left for its writer
    with installation.sessions() as session:
        assert session.scalar(select(func.count()).select_from(TlsReport)) == 1
    assert tls_report_spool.read_spool(installation) == []


def test_a_file_larger_than_a_report_is_refused_unread(installation: Installation, tmp_path: Path) -> None:
    spool = installation.settings.tls_report_spool
    spool.mkdir(parents=True)
    with open(spool / "BIG", "wb") as big:
        big.truncate(6 * 1024 * 1024)
    (said,) = tls_report_spool.read_spool(installation)
    assert said == "Report BIG refused: The message is larger than 5 MB."
