"""`letterhead demo` (what `make run` seeds): a tenant, domain, mailbox, alias and a brand, each once."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import func, select

import cli
from controlplane import create_app
from controlplane.models import Brand, Domain, Tenant


def run(home, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.main, list(args), env={"LETTERHEAD_HOME": str(home)})
    return result.exit_code, result.stdout, result.stderr


def _demo_state(installation) -> tuple[int, int, list[tuple[str, str]], str | None]:
    """(tenants, brands, [(brand host, brand name)], the brand demo.test uses)."""
    with installation.sessions() as session:
        domain = session.scalar(select(Domain).where(Domain.name == "demo.test"))
        return (
            session.scalar(select(func.count(Tenant.id))),
            session.scalar(select(func.count(Brand.id))),
            list(session.execute(select(Brand.hostname, Brand.name)).tuples()),
            domain.brand.hostname if domain is not None and domain.brand is not None else None,
        )


def test_the_demo_seeds_a_brand_that_demo_test_uses_once(settings, installation) -> None:
    code, out, err = run(settings.home, "demo")
    assert code == 0, err
    assert "mail.demo.test" in out and "curl --resolve mail.demo.test:" in out
    assert _demo_state(installation) == (1, 1, [("mail.demo.test", "Demo Mail")], "mail.demo.test")
    code, out, err = run(settings.home, "demo")
    assert code == 0, err
    assert "exists already" in out and "Demo brand" not in out
    assert _demo_state(installation) == (1, 1, [("mail.demo.test", "Demo Mail")], "mail.demo.test")


def test_a_demo_seeded_without_a_brand_gets_it_on_the_next_run(settings, installation) -> None:
    run(settings.home, "demo")
    assert run(settings.home, "brand", "delete", "mail.demo.test", "--yes")[0] == 0
    assert _demo_state(installation)[1:] == (0, [], None)
    code, out, err = run(settings.home, "demo")
    assert code == 0, err
    assert "exists already" in out and "Demo brand" in out
    assert _demo_state(installation) == (1, 1, [("mail.demo.test", "Demo Mail")], "mail.demo.test")


def test_the_demo_webmail_wears_the_brand_on_the_brand_host(settings, installation) -> None:
    run(settings.home, "demo")
    app = create_app({"LETTERHEAD_SETTINGS": settings, "TESTING": True})
    try:
        client = app.test_client()
        assert "<strong>Demo Mail</strong>" in client.get("/login", headers={"Host": "mail.demo.test"}).text
        assert "Demo Mail" not in client.get("/login", headers={"Host": "127.0.0.1"}).text
    finally:
        app.extensions["letterhead"].dispose()
