"""Declarative base, the naming convention Alembic relies on, and shared column types."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from sqlalchemy import BigInteger, DateTime, Integer, MetaData, String, TypeDecorator, func
from sqlalchemy.orm import DeclarativeBase, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


int_pk = Annotated[int, mapped_column(Integer, primary_key=True)]
byte_count = Annotated[int, mapped_column(BigInteger, nullable=False)]
created_at = Annotated[
    dt.datetime, mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
]
dns_name = Annotated[str, mapped_column(String(253), nullable=False)]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A moment stored in UTC and read back tz-aware.

    SQLite keeps no offset, so values are converted to UTC before they are written;
    stored strings then sort and compare in time order, which range queries rely on.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("A naive datetime cannot be stored: give it a time zone.")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


utc_time = Annotated[dt.datetime, mapped_column(UTCDateTime, nullable=False, default=utcnow)]

# SQLite reuses the highest rowid after a delete unless AUTOINCREMENT is set; a reused
# mailbox id must never inherit another mailbox's audit trail.
AUTOINCREMENT = {"sqlite_autoincrement": True}
