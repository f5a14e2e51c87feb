"""Request and response shapes of the API, which the OpenAPI document is made from."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema


class PageArgs(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=1000))


def page_schema(item: type[Schema]) -> type[Schema]:
    """One page of a list: its items, how many there are in all, and where the page stands."""
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item), required=True),
            "total": fields.Integer(required=True),
            "page": fields.Integer(required=True),
            "per_page": fields.Integer(required=True),
        },
        name=item.__name__.removesuffix("Schema") + "Page",
    )


class PoolSchema(Schema):
    total_bytes = fields.Integer(required=True)
    allocated_bytes = fields.Integer(required=True)
    free_bytes = fields.Integer(required=True)
    used_bytes = fields.Integer(
        allow_none=True, metadata={"description": "Mail stored, as Dovecot measured it"}
    )


class TenantSchema(Schema):
    name = fields.String(required=True)
    largest_mailbox_bytes = fields.Integer(required=True)
    active = fields.Boolean(required=True)
    pool = fields.Nested(PoolSchema, required=True)


class DomainSchema(Schema):
    name = fields.String(required=True, metadata={"description": "A-label (punycode) form"})
    display_name = fields.String(required=True, metadata={"description": "Unicode form"})
    active = fields.Boolean(required=True)
    max_mailboxes = fields.Integer(required=True)
    max_aliases = fields.Integer(required=True)
    max_mailbox_bytes = fields.Integer(required=True)


class DomainCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=300))
    max_mailboxes = fields.Integer(required=True, validate=validate.Range(min=0, max=10_000_000))
    max_aliases = fields.Integer(required=True, validate=validate.Range(min=0, max=10_000_000))
    max_mailbox_bytes = fields.Integer(validate=validate.Range(min=1, max=2**62))


class DomainUpdateSchema(Schema):
    max_mailboxes = fields.Integer(validate=validate.Range(min=0, max=10_000_000))
    max_aliases = fields.Integer(validate=validate.Range(min=0, max=10_000_000))
    max_mailbox_bytes = fields.Integer(validate=validate.Range(min=1, max=2**62))
    active = fields.Boolean()


DomainPageSchema = page_schema(DomainSchema)


class DomainUsageSchema(Schema):
    domain = fields.String(required=True)
    mailboxes = fields.Integer(required=True)
    aliases = fields.Integer(required=True)
    allocated_bytes = fields.Integer(required=True)
    used_bytes = fields.Integer(allow_none=True)


class MailboxSchema(Schema):
    address = fields.String(required=True)
    display_name = fields.String(required=True)
    quota_bytes = fields.Integer(required=True)
    active = fields.Boolean(required=True)
    is_domain_admin = fields.Boolean(required=True)
    used_bytes = fields.Integer(
        allow_none=True, metadata={"description": "Mail stored, as Dovecot measured it"}
    )
    hourly_messages = fields.Integer(
        required=True, metadata={"description": "Messages it may send per hour through submission"}
    )
    hourly_messages_is_default = fields.Boolean(
        required=True, metadata={"description": "Whether that is its tenant's limit for each mailbox"}
    )


class MailboxCreateSchema(Schema):
    local_part = fields.String(required=True, validate=validate.Length(min=1, max=200))
    quota_bytes = fields.Integer(required=True, validate=validate.Range(min=0, max=2**62))
    password = fields.String(validate=validate.Length(max=1000), metadata={"description": "Plain password"})
    password_hash = fields.String(
        validate=validate.Length(max=1000),
        metadata={
            "description": "Already hashed, as Dovecot verifies it: {SHA512-CRYPT}$6$... or {BLF-CRYPT}$2y$..."
        },
    )
    display_name = fields.String(load_default="", validate=validate.Length(max=1000))
    is_domain_admin = fields.Boolean(load_default=False)


class MailboxUpdateSchema(Schema):
    quota_bytes = fields.Integer(validate=validate.Range(min=0, max=2**62))
    password = fields.String(validate=validate.Length(max=1000))
    password_hash = fields.String(validate=validate.Length(max=1000))
    display_name = fields.String(validate=validate.Length(max=1000))
    active = fields.Boolean()
    is_domain_admin = fields.Boolean()
    hourly_messages = fields.Integer(
        allow_none=True,
        metadata={"description": "Messages per hour it may send (full admins); null: the tenant's limit"},
    )


class MailboxListArgs(PageArgs):
    q = fields.String(
        load_default="", validate=validate.Length(max=200), metadata={"description": "Start of the address"}
    )


MailboxPageSchema = page_schema(MailboxSchema)


class BulkMailboxesSchema(Schema):
    mailboxes = fields.List(
        fields.Nested(MailboxCreateSchema), required=True, validate=validate.Length(min=1, max=1000)
    )


class BulkResultSchema(Schema):
    index = fields.Integer(required=True)
    address = fields.String(required=True)
    status = fields.Integer(required=True, metadata={"description": "201 created, or the error's status"})
    error = fields.Dict(
        allow_none=True, metadata={"description": "The problem, as a single call would answer it"}
    )


class BulkResponseSchema(Schema):
    created = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    results = fields.List(fields.Nested(BulkResultSchema), required=True)


class AliasSchema(Schema):
    address = fields.String(required=True, metadata={"description": "@domain for the catch-all"})
    local_part = fields.String(required=True, metadata={"description": '"@" for the catch-all'})
    destinations = fields.List(fields.String(), required=True)
    active = fields.Boolean(required=True)


class AliasCreateSchema(Schema):
    local_part = fields.String(
        required=True,
        validate=validate.Length(min=1, max=200),
        metadata={"description": 'The part before @; "@" makes the domain\'s catch-all'},
    )
    destinations = fields.List(
        fields.String(validate=validate.Length(min=1, max=400)),
        required=True,
        validate=validate.Length(min=1, max=1000),
        metadata={"description": "Mailboxes or aliases here, or addresses elsewhere"},
    )


class AliasUpdateSchema(Schema):
    destinations = fields.List(
        fields.String(validate=validate.Length(min=1, max=400)),
        required=True,
        validate=validate.Length(min=1, max=1000),
    )


AliasPageSchema = page_schema(AliasSchema)


class FilterSchema(Schema):
    name = fields.String(
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "Letters, digits and . _ -, starting with a letter or digit"},
    )
    script = fields.String(
        required=True,
        metadata={"description": "Sieve (RFC 5228) as Dovecot Pigeonhole runs it; at most 64 KB"},
    )


class FilterApplySchema(FilterSchema):
    addresses = fields.List(
        fields.String(validate=validate.Length(max=400)),
        validate=validate.Length(min=1, max=10_000),
        metadata={"description": "Mailboxes to filter; or give `domain`"},
    )
    domain = fields.String(
        validate=validate.Length(min=1, max=300),
        metadata={"description": "Filter every mailbox of this domain"},
    )

    @validates_schema
    def one_target(self, data, **kwargs):
        if ("addresses" in data) == ("domain" in data):
            raise ValidationError("Give either `addresses` or `domain`.", "addresses")


class ActiveFilterSchema(Schema):
    address = fields.String(required=True)
    active = fields.Boolean(required=True)
    name = fields.String(allow_none=True, required=True)
    script = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "None when no filter is active, or one set by another client is"},
    )


class FilterResultSchema(Schema):
    address = fields.String(required=True)
    status = fields.Integer(required=True, metadata={"description": "200 applied, or the error's status"})
    error = fields.Dict(
        allow_none=True, metadata={"description": "The problem, as a single call would answer it"}
    )


class FilterApplyResponseSchema(Schema):
    name = fields.String(required=True)
    applied = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    results = fields.List(fields.Nested(FilterResultSchema), required=True)


class CertificateSchema(Schema):
    status = fields.String(
        required=True,
        metadata={
            "description": "none, waiting_dns, issued or failed; until issued the default certificate is served"
        },
    )
    names = fields.List(
        fields.String(), required=True, metadata={"description": "Names the certificate covers"}
    )
    not_after = fields.DateTime(allow_none=True)
    error = fields.String(required=True, metadata={"description": "Why the last order failed, in words"})
    next_attempt_at = fields.DateTime(
        allow_none=True, metadata={"description": "No new order before this (backoff)"}
    )


class BrandSchema(Schema):
    hostname = fields.String(required=True, metadata={"description": "The server name, A-label form"})
    name = fields.String(required=True)
    support_url = fields.String(allow_none=True)
    shared = fields.Boolean(required=True)
    has_logo = fields.Boolean(required=True)
    has_logo_dark = fields.Boolean(required=True)
    has_favicon = fields.Boolean(required=True)
    accent_colour = fields.String(
        allow_none=True, metadata={"description": "#rrggbb, or null: the platform's"}
    )
    page_title = fields.String(allow_none=True, metadata={"description": "The browser tab's title"})
    footer_text = fields.String(allow_none=True, metadata={"description": "A line at the foot of every page"})
    domains = fields.List(
        fields.String(), required=True, metadata={"description": "Domains using this brand"}
    )
    certificate = fields.Nested(CertificateSchema, required=True)


class BrandCreateSchema(Schema):
    hostname = fields.String(required=True, validate=validate.Length(min=1, max=300))
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    support_url = fields.String(allow_none=True, validate=validate.Length(max=2000))
    shared = fields.Boolean(load_default=False)


class BrandUpdateSchema(Schema):
    hostname = fields.String(validate=validate.Length(min=1, max=300))
    name = fields.String(validate=validate.Length(min=1, max=100))
    support_url = fields.String(allow_none=True, validate=validate.Length(max=2000))
    shared = fields.Boolean()
    accent_colour = fields.String(allow_none=True, validate=validate.Length(max=20))
    page_title = fields.String(allow_none=True, validate=validate.Length(max=500))
    footer_text = fields.String(allow_none=True, validate=validate.Length(max=500))


BrandPageSchema = page_schema(BrandSchema)


class DomainBrandSchema(Schema):
    brand = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "A brand hostname of the tenant, or null for the platform host"},
    )


class DnsRecordStateSchema(Schema):
    name = fields.String(required=True)
    type = fields.String(required=True)
    expected = fields.String(required=True)
    accepted = fields.List(
        fields.String(), required=True, metadata={"description": "Other forms that also work"}
    )
    note = fields.String(required=True, metadata={"description": "What the record is for"})
    state = fields.String(
        required=True,
        metadata={
            "description": "ok, missing, wrong, propagating, or unchecked (never checked or no answer)"
        },
    )
    found = fields.List(fields.String(), required=True, metadata={"description": "The values DNS gave"})
    detail = fields.String(required=True)


class DomainDnsSchema(Schema):
    domain = fields.String(required=True)
    server_hostname = fields.String(required=True)
    checked_at = fields.DateTime(allow_none=True)
    records = fields.List(fields.Nested(DnsRecordStateSchema), required=True)


class TlsReportFailureSchema(Schema):
    result_type = fields.String(required=True, metadata={"description": "RFC 8460's result type"})
    explanation = fields.String(required=True, metadata={"description": "The result type in words"})
    sending_mta_ip = fields.String(required=True)
    receiving_mx_hostname = fields.String(required=True)
    receiving_ip = fields.String(required=True)
    failed_sessions = fields.Integer(required=True)
    details = fields.String(required=True, metadata={"description": "The sender's reason code and notes"})


class TlsReportSchema(Schema):
    organization = fields.String(required=True, metadata={"description": "Who sent the report"})
    report_id = fields.String(required=True)
    contact = fields.String(required=True)
    policy_type = fields.String(required=True, metadata={"description": "sts, tlsa or no-policy-found"})
    starts_at = fields.DateTime(required=True)
    ends_at = fields.DateTime(required=True)
    successful_sessions = fields.Integer(required=True)
    failed_sessions = fields.Integer(required=True)
    failures = fields.List(fields.Nested(TlsReportFailureSchema), required=True)


class DomainAlertsSchema(Schema):
    recipient = fields.String(required=True, validate=validate.Length(min=3, max=320),
                              metadata={"description": "An address of the domain (a mailbox or an alias)"})  # fmt: skip
    bounce_threshold = fields.Integer(
        allow_none=True, load_default=None, validate=validate.Range(min=0, max=1_000_000),
        metadata={"description": "Mail when more than this many recipients bounced or were refused within an hour; null: never"},
    )  # fmt: skip
    storage_warning = fields.Boolean(
        load_default=False, metadata={"description": "Mail when a mailbox passes 95%"}
    )


class DmarcDaySchema(Schema):
    day = fields.Date(required=True)
    passing = fields.Integer(
        required=True, metadata={"description": "Messages passing DMARC (DKIM or SPF aligned)"}
    )
    failing = fields.Integer(required=True)


class DmarcSenderSchema(Schema):
    source_ip = fields.String(required=True)
    messages = fields.Integer(required=True)
    passing = fields.Integer(required=True)
    dkim_aligned = fields.Integer(required=True)
    spf_aligned = fields.Integer(required=True)
    quarantined = fields.Integer(required=True)
    rejected = fields.Integer(required=True)
    reporters = fields.List(fields.String(), required=True)
    dkim_results = fields.String(required=True)
    spf_results = fields.String(required=True)
    verdict = fields.String(required=True, metadata={"description": "In words"})


class DmarcSummarySchema(Schema):
    reports = fields.Integer(required=True)
    first = fields.DateTime(allow_none=True)
    last = fields.DateTime(allow_none=True)
    days = fields.List(fields.Nested(DmarcDaySchema), required=True)
    senders = fields.List(fields.Nested(DmarcSenderSchema), required=True)


class DkimKeySchema(Schema):
    selector = fields.String(required=True)
    state = fields.String(
        required=True,
        metadata={"description": "active: signs now; retiring: kept published after a rotation"},
    )
    created_at = fields.DateTime(required=True)
    retire_after = fields.DateTime(required=True, allow_none=True)
    record_name = fields.String(required=True, metadata={"description": "The TXT record's name"})
    record_value = fields.String(required=True, metadata={"description": "The TXT record's value"})


class SpamThresholdsSchema(Schema):
    reject_score = fields.Float(
        required=True,
        allow_none=True,
        metadata={"description": "Refuse mail scoring at least this; null: the installation's default"},
    )
    junk_score = fields.Float(
        required=True,
        allow_none=True,
        metadata={
            "description": "File mail scoring at least this into Junk; null: the installation's default"
        },
    )
    greylisting = fields.Boolean(
        load_default=None,
        allow_none=True,
        metadata={"description": "Defer mail from senders not seen lately once; omitted: unchanged"},
    )


class SpamThresholdsStateSchema(Schema):
    reject_score = fields.Float(required=True)
    reject_score_is_default = fields.Boolean(required=True)
    junk_score = fields.Float(required=True)
    junk_score_is_default = fields.Boolean(required=True)
    greylisting = fields.Boolean(required=True)


class SenderListsSchema(Schema):
    allowed = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "Never filed as junk: addresses, and @domain for a whole domain"},
    )
    blocked = fields.List(fields.String(), required=True, metadata={"description": "Always filed as junk"})


class SenderListingSchema(Schema):
    list = fields.String(
        required=True,
        validate=validate.OneOf(["allow", "block"]),
        metadata={"description": "allow: never junk; block: always junk (taken off the other list)"},
    )


class MigrationSourceSchema(Schema):
    address = fields.String(required=True, validate=validate.Length(min=3, max=320),
                            metadata={"description": "A mailbox of the domain, which receives the copy"})  # fmt: skip
    old_server = fields.String(
        required=True,
        validate=validate.Length(min=1, max=300),
        metadata={"description": 'The old IMAP server: "host", "host:port", or "starttls://host[:port]"'},
    )
    old_login = fields.String(required=True, validate=validate.Length(min=1, max=320))
    old_password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=1024))


class MigrationCreateSchema(Schema):
    mailboxes = fields.List(fields.Nested(MigrationSourceSchema), validate=validate.Length(min=1, max=5000))
    csv = fields.String(
        validate=validate.Length(min=1, max=5_000_000),
        metadata={
            "description": "Instead of `mailboxes`: rows of address, old server, old login, old password"
        },
    )

    @validates_schema
    def _one_source(self, data, **_kwargs) -> None:
        if ("mailboxes" in data) == ("csv" in data):
            raise ValidationError("Give either mailboxes or csv.")


class MigrationMailboxSchema(Schema):
    address = fields.String(required=True)
    old_server = fields.String(required=True)
    old_login = fields.String(required=True)
    state = fields.String(required=True, metadata={"description": "queued, running, done or failed"})
    passes = fields.Integer(required=True)
    messages_total = fields.Integer(allow_none=True, metadata={"description": "What the old server holds"})
    bytes_total = fields.Integer(allow_none=True)
    messages_done = fields.Integer(required=True)
    bytes_done = fields.Integer(required=True)
    messages_last_pass = fields.Integer(
        required=True, metadata={"description": "Copied by the latest pass alone"}
    )
    error = fields.String(required=True, metadata={"description": "Why it stopped, in words"})
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


class MigrationJobSchema(Schema):
    id = fields.Integer(required=True)
    domain = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    closed_at = fields.DateTime(
        allow_none=True, metadata={"description": "Set once closed: old passwords deleted"}
    )
    mailboxes = fields.List(fields.Nested(MigrationMailboxSchema), required=True)
