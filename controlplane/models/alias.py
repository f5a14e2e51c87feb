from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from controlplane.models.base import AUTOINCREMENT, Base, created_at, int_pk

if TYPE_CHECKING:
    from controlplane.models.domain import Domain


class Alias(Base):
    """An address that forwards to one or more destinations, local or external.

    An empty local part is the domain's catch-all.
    """

    __tablename__ = "alias"
    __table_args__ = (UniqueConstraint("domain_id", "local_part"), AUTOINCREMENT)

    id: Mapped[int_pk]
    domain_id: Mapped[int] = mapped_column(ForeignKey("domain.id", ondelete="CASCADE"), index=True)
    local_part: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[created_at]

    domain: Mapped[Domain] = relationship(back_populates="aliases")
    destinations: Mapped[list[AliasDestination]] = relationship(
        back_populates="alias",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="AliasDestination.address",
    )

    @property
    def address(self) -> str:
        return f"{self.local_part}@{self.domain.name}"

    @property
    def in_service(self) -> bool:
        """It forwards mail: it, its domain and its tenant are active."""
        return self.active and self.domain.in_service

    @property
    def destination_addresses(self) -> list[str]:
        return [destination.address for destination in self.destinations]


class AliasDestination(Base):
    __tablename__ = "alias_destination"
    __table_args__ = (UniqueConstraint("alias_id", "address"), AUTOINCREMENT)

    id: Mapped[int_pk]
    alias_id: Mapped[int] = mapped_column(ForeignKey("alias.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(String(320))

    alias: Mapped[Alias] = relationship(back_populates="destinations")
