"""Typed SQLAlchemy models, one module per aggregate."""

from controlplane.models.acme_challenge import AcmeChallenge
from controlplane.models.admin import Admin
from controlplane.models.alias import Alias, AliasDestination
from controlplane.models.api_token import ApiToken
from controlplane.models.audit import AuditEntry
from controlplane.models.base import Base
from controlplane.models.brand import Brand
from controlplane.models.certificate import PlatformCertificate
from controlplane.models.config_generation import ConfigGeneration
from controlplane.models.daemon_login import DaemonLogin
from controlplane.models.dkim_key import DkimKey
from controlplane.models.dmarc_report import DmarcRecord, DmarcReport
from controlplane.models.domain import Domain
from controlplane.models.domain_alert import DomainAlert, MailboxStorageAlert
from controlplane.models.image_sender import ImageSender
from controlplane.models.logs import AuthEvent
from controlplane.models.mail_log import (
    LogCheckpoint,
    MailQueueEntry,
    MailRecipientResult,
    MailTransaction,
    SmtpDialogueLine,
    UnparsedLogLine,
)
from controlplane.models.mailbox import Mailbox
from controlplane.models.migration import MigrationJob, MigrationMailbox
from controlplane.models.node import Node, NodeTask, StateGeneration
from controlplane.models.sender_rule import SenderRule
from controlplane.models.tenant import GIB, Tenant
from controlplane.models.tls_report import TlsReport, TlsReportFailure

__all__ = [
    "AcmeChallenge",
    "GIB",
    "Admin",
    "ApiToken",
    "Alias",
    "AliasDestination",
    "AuditEntry",
    "AuthEvent",
    "Base",
    "DomainAlert",
    "MailboxStorageAlert",
    "DmarcRecord",
    "DmarcReport",
    "MigrationJob",
    "MigrationMailbox",
    "Brand",
    "ConfigGeneration",
    "PlatformCertificate",
    "TlsReport",
    "TlsReportFailure",
    "DaemonLogin",
    "DkimKey",
    "Domain",
    "ImageSender",
    "Node",
    "NodeTask",
    "StateGeneration",
    "LogCheckpoint",
    "MailQueueEntry",
    "MailRecipientResult",
    "MailTransaction",
    "SenderRule",
    "Mailbox",
    "SmtpDialogueLine",
    "UnparsedLogLine",
    "Tenant",
]
