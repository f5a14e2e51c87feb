"""The daemons' own checkers accept what we render, and refuse what is broken."""

from __future__ import annotations

import base64
import dataclasses
import grp
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.certs.selfsigned import ensure_default_certificate
from controlplane.daemons import apply, dovecot, haproxy, nginx, postfix, redis, rspamd
from controlplane.daemons.process import DaemonError
from controlplane.render import render_all
from controlplane.runners.scratch import ScratchStack
from controlplane.services import configuration, passwords
from controlplane.settings import TEMPLATE_ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def prepared() -> Iterator[ScratchStack]:
    """A state directory with schema, certificates and a live generation; no daemon runs."""
    scratch = ScratchStack().prepare()
    yield scratch
    scratch.stop()


def test_prepared_installation_has_a_checked_live_generation(prepared: ScratchStack) -> None:
    with prepared.installation.transaction() as session:
        live = apply.live_generation(session)
        assert live is not None and live.status == "live"
        assert prepared.settings.live_config.resolve() == Path(live.path)
    apply.check_generation(Path(live.path), prepared.settings)


def test_brand_certificates_by_sni_pass_the_checkers(prepared: ScratchStack, tmp_path: Path) -> None:
    brand = ensure_default_certificate(tmp_path / "brand", "mail.customer.example")
    brand = type(brand)("mail.customer.example", brand.cert_path, brand.key_path)
    state = apply.build_render_state(prepared.settings, sni_identities=(brand,))
    with prepared.installation.transaction() as session:
        generation = apply.apply_configuration(session, prepared.settings, state=state, reload=False)
        assert generation.status == "live", generation.error
    live = prepared.settings.live_config
    published = subprocess.run(
        ["/usr/sbin/postmap", "-c", str(live / "postfix"), "-q", "mail.customer.example",
         f"sqlite:{live / 'postfix' / 'sql-sni.cf'}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert base64.b64decode(published).startswith(b"-----BEGIN PRIVATE KEY-----")
    # nginx's map for HTTPS names one published file, readable by its workers only; HAProxy's
    # crt-list (IMAPS and POP3S) the same file, for that name, and its configuration no brand.
    nginx_conf = (live / "nginx" / "nginx.conf").read_text()
    pem = Path(re.search(r"\n\s+mail\.customer\.example (\S+);", nginx_conf)[1])
    assert f"{pem} mail.customer.example\n" in haproxy.crt_list_path(prepared.settings).read_text()
    assert "mail.customer.example" not in (live / "haproxy" / "haproxy.cfg").read_text()
    assert (
        pem.read_bytes()
        == Path(brand.cert_path).read_bytes().rstrip(b"\n") + b"\n" + Path(brand.key_path).read_bytes()
    )
    assert stat.S_IMODE(pem.stat().st_mode) == 0o640
    assert grp.getgrgid(pem.stat().st_gid).gr_name == "www-data"
    assert "mail.customer.example" not in (live / "dovecot" / "dovecot.conf").read_text()


def _rendered_copy(prepared: ScratchStack, tmp_path: Path) -> Path:
    files = render_all(apply.build_render_state(prepared.settings))
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    return tmp_path


@pytest.mark.parametrize(
    "bad_line, expected",
    [
        ("bogus_parameter_for_test = 1", "unused parameter"),
        ("virtual_alias_maps = nosuchtype:/tmp/x", "nosuchtype"),
        ("smtpd_recipient_restrictions = reject_unlisted_recipient,,, permit_nonsense", "permit_nonsense"),
    ],
)
def test_postfix_check_refuses_what_postfix_check_alone_would_pass(
    prepared: ScratchStack, tmp_path: Path, bad_line: str, expected: str
) -> None:
    config = _rendered_copy(prepared, tmp_path)
    main_cf = config / "postfix" / "main.cf"
    main_cf.write_text(main_cf.read_text() + bad_line + "\n")
    with pytest.raises(DaemonError) as refused:
        apply.check_generation(config, prepared.settings)
    assert "Postfix refused" in str(refused.value)
    assert expected in str(refused.value)


def test_postfix_check_refuses_a_map_whose_query_fails(prepared: ScratchStack, tmp_path: Path) -> None:
    config = _rendered_copy(prepared, tmp_path)
    sql_map = config / "postfix" / "sql-mailboxes.cf"
    sql_map.write_text(sql_map.read_text().replace("FROM mail_users", "FROM no_such_view"))
    with pytest.raises(DaemonError, match="sql-mailboxes.cf"):
        postfix.check_config(config / "postfix")


def test_dovecot_check_refuses_a_missing_certificate(prepared: ScratchStack, tmp_path: Path) -> None:
    config = _rendered_copy(prepared, tmp_path)
    conf = config / "dovecot" / "dovecot.conf"
    conf.write_text(conf.read_text().replace("certs/default.crt", "certs/missing.crt"))
    with pytest.raises(DaemonError, match="Dovecot refused"):
        dovecot.check_config(conf)


def test_dovecot_check_refuses_a_syntax_error(prepared: ScratchStack, tmp_path: Path) -> None:
    config = _rendered_copy(prepared, tmp_path)
    conf = config / "dovecot" / "dovecot.conf"
    conf.write_text(conf.read_text() + "service imap-login {\n")
    with pytest.raises(DaemonError, match="Dovecot refused"):
        dovecot.check_config(conf)


def test_a_certificate_nginx_could_not_load_is_refused_before_it_goes_live(
    prepared: ScratchStack, tmp_path: Path
) -> None:
    # nginx names its certificates in a variable, so `nginx -t` never loads them: the published
    # file is loaded before the generation may go live, and a key that does not fit refuses it.
    state = apply.build_render_state(prepared.settings)
    stranger = ensure_default_certificate(tmp_path / "stranger", "other.example")
    broken = dataclasses.replace(state.default_tls, key_path=stranger.key_path)
    with prepared.installation.transaction() as session:
        live_before = apply.live_generation(session)
        generation = apply.apply_configuration(
            session, prepared.settings, state=dataclasses.replace(state, default_tls=broken), reload=False
        )
        assert generation.status == "refused"
        assert "cannot be served" in generation.error
        assert apply.live_generation(session) == live_before
    served = Path(prepared.settings.certs_dir / "served")
    assert not list(served.glob(".*"))  # no half-written file left behind


def test_nginx_check_refuses_a_syntax_error(prepared: ScratchStack, tmp_path: Path) -> None:
    config = _rendered_copy(prepared, tmp_path)
    conf = config / "nginx" / "nginx.conf"
    conf.write_text(conf.read_text().replace("server_tokens off;", "server_tokens off"))
    with pytest.raises(DaemonError, match="nginx refused"):
        nginx.check_config(conf)


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("    mode tcp\n", "    mode tcp\n    no-such-keyword 1\n", "no-such-keyword"),
        ("send-proxy-v2", "send-proxy-v9", "send-proxy-v9"),
        # A default certificate that cannot be loaded.
        ("ssl crt ", "ssl crt /nonexistent", "/nonexistent"),
    ],
)
def test_haproxy_check_refuses_what_haproxy_would_not_run(
    prepared: ScratchStack, tmp_path: Path, old: str, new: str, expected: str
) -> None:
    config = _rendered_copy(prepared, tmp_path)
    conf = config / "haproxy" / "haproxy.cfg"
    haproxy.check_config(conf)
    assert old in conf.read_text()
    conf.write_text(conf.read_text().replace(old, new, 1))
    with pytest.raises(DaemonError, match="HAProxy refused the configuration") as refused:
        haproxy.check_config(conf)
    assert expected in str(refused.value)


def _refused_with_broken_template(
    prepared: ScratchStack, tmp_path: Path, template: str, old: str, new: str, *, force: bool = False
) -> str:
    """Apply the configuration from a copy of the templates with `old` made `new` in one of
    them: it must be refused and the live generation stay. Returns the refusal."""
    broken_templates = tmp_path / "templates"
    shutil.copytree(TEMPLATE_ROOT, broken_templates)
    path = broken_templates / template
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    live_before = prepared.settings.live_config.resolve()
    with prepared.installation.transaction() as session:
        generation = configuration.apply_current_configuration(
            session, prepared.settings, template_root=broken_templates, reload=False, force=force
        )
        assert generation.status == "refused"
        assert not generation.path or Path(generation.path) != live_before
        refusal = generation.error
    assert prepared.settings.live_config.resolve() == live_before
    return refusal


def test_a_broken_haproxy_template_is_refused_and_never_goes_live(
    prepared: ScratchStack, tmp_path: Path
) -> None:
    refusal = _refused_with_broken_template(
        prepared, tmp_path, "haproxy/haproxy.cfg.j2", "timeout tunnel 31m", "timeout tunnel forever"
    )
    assert "HAProxy refused" in refusal and "timeout tunnel" in refusal


def test_rspamd_check_passes_the_rendered_configuration_and_refuses_a_broken_rule(
    prepared: ScratchStack, tmp_path: Path
) -> None:
    config = _rendered_copy(prepared, tmp_path)
    rspamd.check_config(prepared.settings, config / "rspamd")
    policy = config / "rspamd" / "rspamd.local.lua"
    policy.write_text(
        policy.read_text().replace("local function decide(task", "local function decide(task,,")
    )
    with pytest.raises(DaemonError, match="rspamd refused the configuration") as refused:
        rspamd.check_config(prepared.settings, config / "rspamd")
    assert "rspamd.local.lua" in str(refused.value)


def test_rspamd_check_refuses_a_setting_syntax_error(prepared: ScratchStack, tmp_path: Path) -> None:
    config = _rendered_copy(prepared, tmp_path)
    proxy = config / "rspamd" / "local.d" / "worker-proxy.inc"
    proxy.write_text(proxy.read_text().replace("milter = yes;", "milter = yes; {"))
    with pytest.raises(DaemonError, match="rspamd refused the configuration"):
        rspamd.check_config(prepared.settings, config / "rspamd")


def test_redis_check_starts_a_scratch_instance_and_refuses_an_unknown_directive(
    prepared: ScratchStack, tmp_path: Path
) -> None:
    config = _rendered_copy(prepared, tmp_path)
    conf = config / "redis" / "redis.conf"
    redis.check_config(conf)
    # The scratch instance never touched the real one's port or folder.
    assert not redis.ping(port=prepared.settings.ports["redis"])
    assert not (prepared.settings.redis_dir / "dump.rdb").exists()
    conf.write_text(conf.read_text() + "no-such-directive yes\n")
    with pytest.raises(DaemonError, match="Redis refused the configuration") as refused:
        redis.check_config(conf)
    assert "no-such-directive" in str(refused.value)


def test_a_broken_rspamd_template_is_refused_and_never_goes_live(
    prepared: ScratchStack, tmp_path: Path
) -> None:
    actions = "rspamd/local.d/actions.conf.j2"
    refusal = _refused_with_broken_template(prepared, tmp_path, actions, "\n", "\nreject = ;\n")
    assert "rspamd refused" in refusal


def test_a_template_error_is_recorded_and_never_goes_live(prepared: ScratchStack, tmp_path: Path) -> None:
    refusal = _refused_with_broken_template(
        prepared, tmp_path, "postfix/main.cf.j2", "{{ hostname }}", "{{ no_such_value }}", force=True
    )
    assert "no_such_value" in refusal


def test_a_config_that_fails_its_check_is_recorded_and_never_goes_live(
    prepared: ScratchStack, tmp_path: Path
) -> None:
    refusal = _refused_with_broken_template(
        prepared, tmp_path, "postfix/main.cf.j2", "\n", "\nsmtpd_tls_chain_files_typo = x\n", force=True
    )
    assert "smtpd_tls_chain_files_typo" in refusal


def test_unchanged_state_makes_no_new_generation(prepared: ScratchStack) -> None:
    with prepared.installation.transaction() as session:
        first = configuration.apply_current_configuration(session, prepared.settings, reload=False)
        second = configuration.apply_current_configuration(session, prepared.settings, reload=False)
        assert first.id == second.id and second.status == "live"


def test_dovecot_verifies_the_password_hashes_letterhead_writes() -> None:
    stored = passwords.hash_password("a long enough secret")
    verified = subprocess.run(
        ["/usr/bin/doveadm", "pw", "-t", stored, "-p", "a long enough secret"], capture_output=True, text=True
    )
    assert verified.returncode == 0 and "verified" in verified.stdout + verified.stderr
    wrong = subprocess.run(
        ["/usr/bin/doveadm", "pw", "-t", stored, "-p", "the wrong secret"], capture_output=True, text=True
    )
    assert wrong.returncode != 0


def test_the_quota_warning_script_sits_at_a_stable_path_and_passes_the_shell(prepared: ScratchStack) -> None:
    live = prepared.settings.live_config / "dovecot"
    dump = subprocess.run(
        ["/usr/bin/doveconf", "-c", str(live / "dovecot.conf"), "-h", "service/quota-warning/executable"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    # Through the `live` link, never a generation's own folder: the path survives every apply.
    assert dump.split() == ["script", "/bin/sh", str(live / "quota-warning.sh")]
    dovecot.check_quota_warning_script(live / "quota-warning.sh")


def test_dovecot_check_refuses_a_broken_quota_warning_script(prepared: ScratchStack, tmp_path: Path) -> None:
    config = _rendered_copy(prepared, tmp_path)
    script = config / "dovecot" / "quota-warning.sh"
    script.write_text(script.read_text().replace("esac", "", 1))
    with pytest.raises(DaemonError, match="quota warning script"):
        dovecot.check_config(config / "dovecot" / "dovecot.conf")
    script.unlink()
    with pytest.raises(DaemonError, match="quota warning script"):
        dovecot.check_config(config / "dovecot" / "dovecot.conf")


def test_the_usage_database_is_written_by_the_dict_service_and_read_by_letterhead(
    prepared: ScratchStack,
) -> None:
    from controlplane.daemons.usage import usage_of
    from controlplane.render import USAGE_DICT_USER

    path = prepared.settings.usage_database_path
    for item in (path, path.parent):
        assert (item.owner(), item.group()) == (USAGE_DICT_USER, USAGE_DICT_USER)
    assert path.stat().st_mode & 0o777 == 0o644
    dict_user = subprocess.run(
        ["/usr/bin/doveconf", "-c", str(prepared.settings.live_config / "dovecot" / "dovecot.conf"),
         "-h", "service/dict/user"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert dict_user == USAGE_DICT_USER
    assert usage_of(prepared.settings, ["nobody@a.test"]) == {}
    assert sorted(p.name for p in path.parent.iterdir()) == ["usage.db"]  # reading left no journal


def test_config_check_checks_everything_and_makes_nothing_live(prepared: ScratchStack) -> None:
    from click.testing import CliRunner
    from sqlalchemy import func, select

    import cli
    from controlplane.models import ConfigGeneration

    live_before = prepared.settings.live_config.resolve()
    with prepared.installation.sessions() as session:
        generations_before = session.scalar(select(func.count()).select_from(ConfigGeneration))
    result = CliRunner().invoke(cli.main, ["config", "check"], env={"LETTERHEAD_HOME": str(prepared.home)})
    assert result.exit_code == 0, result.output
    assert "nothing was made live" in result.output
    assert prepared.settings.live_config.resolve() == live_before
    with prepared.installation.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ConfigGeneration)) == generations_before
    assert not list(prepared.settings.config_root.glob(".check-*"))


def test_check_configuration_refuses_a_broken_template_without_touching_the_live_one(
    prepared: ScratchStack, tmp_path: Path
) -> None:
    broken_templates = tmp_path / "templates"
    shutil.copytree(TEMPLATE_ROOT, broken_templates)
    main_cf = broken_templates / "postfix" / "main.cf.j2"
    main_cf.write_text(main_cf.read_text() + "\nno_such_postfix_parameter = 1\n")
    live_before = prepared.settings.live_config.resolve()
    state = apply.build_render_state(prepared.settings)
    with pytest.raises(DaemonError, match="no_such_postfix_parameter"):
        apply.check_configuration(prepared.settings, state=state, template_root=broken_templates)
    assert prepared.settings.live_config.resolve() == live_before
    assert not list(prepared.settings.config_root.glob(".check-*"))
