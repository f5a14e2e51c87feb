"""The configuration the daemons run: the state to render, taken from the settings and the
database (the brands' certificates), made live by the daemons' adapter (daemons/apply.py),
which is handed that state and never reads it itself."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from controlplane.daemons import apply
from controlplane.models import ConfigGeneration
from controlplane.render import RenderState
from controlplane.services import nodes, platform_certificates
from controlplane.services.brands import served_identities
from controlplane.settings import Settings


def current_render_state(session: Session, settings: Settings) -> RenderState:
    """The state to render now: settings plus the certificates in the database (brands', the
    platform host's and the setup names'; and, on a mail node, the other nodes' addresses)."""
    peers = nodes.peer_addresses(session, settings.node_name) if settings.node_name else ()
    # Brands' last: where a name is in both (a domain just given a brand), the brand's is served.
    setup = platform_certificates.setup_identities(session, settings)
    identities = setup + served_identities(session, settings)
    return apply.build_render_state(
        settings, identities, peers, default_tls=platform_certificates.platform_identity(session, settings)
    )


def apply_current_configuration(session: Session, settings: Settings, **options: Any) -> ConfigGeneration:
    """Render the current state, check it and make it live (see apply.apply_configuration for
    `options` and the generation returned). The caller commits."""
    return apply.apply_configuration(
        session, settings, state=current_render_state(session, settings), **options
    )


def check_current_configuration(session: Session, settings: Settings) -> int:
    """Render the current state and check it with the daemons' own tools, without making it live
    (apply.check_configuration). Raises DaemonError with their words."""
    return apply.check_configuration(settings, state=current_render_state(session, settings))
