"""What the DMARC and TLS report stores share: reading a gzipped report within a size cap, and
keeping a report once however often it is sent."""

from __future__ import annotations

import zlib

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controlplane.errors import ValidationError
from controlplane.models import Base


def unpacked_too_large(limit: int) -> ValidationError:
    return ValidationError(f"The report unpacks to more than {limit // 1024**2} MB: refused.")


def gunzip_capped(data: bytes, limit: int) -> bytes:
    """At most `limit` bytes of it: a gzip bomb stops there, whatever it claims."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as error:
        raise ValidationError(f"The report is not valid gzip: {error}.") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise unpacked_too_large(limit)
    return out


def add_once(session: Session, row: Base) -> bool:
    """Add `row`; False when its unique key says it was kept before (a report sent again)."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        return False
    return True
