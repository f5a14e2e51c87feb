from __future__ import annotations

import pytest

from controlplane import validation
from controlplane.errors import ValidationError


def _refused(function, value, **kwargs) -> ValidationError:
    """Call `function(value)`, require a ValidationError with a message, and return it."""
    with pytest.raises(ValidationError) as caught:
        function(value, **kwargs)
    assert caught.value.message.strip(), "a refusal must tell the person why"
    assert str(caught.value) == caught.value.message
    return caught.value


# --- normalize_domain ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "",
        "exa mple.com",
        " example.com",
        "example.com ",
        "example.com\n",
        "exa\nmple.com",
        "example.com\r",
        "exa\tmple.com",
        "example.com\x00",
        'exa"mple.com',
        "exa'mple.com",
        "exa{mple.com",
        "exa}mple.com",
        "exa;mple.com",
        "exa/mple.com",
        "exa_mple.com",
        "example.com.",
        "a" * 300,
        "example..com",
        ".example.com",
        "localhost",
        "a" * 64 + ".com",
        "-example.com",
        "example-.com",
        "example.-com",
        "xn--zz.example",
        "example.123",
        "192.168.1.1",
    ],
)
def test_normalize_domain_refuses_bad_names(name: str) -> None:
    _refused(validation.normalize_domain, name)


def test_normalize_domain_refuses_non_strings() -> None:
    _refused(validation.normalize_domain, None)
    _refused(validation.normalize_domain, 42)


def test_normalize_domain_message_explains_trailing_dot() -> None:
    error = _refused(validation.normalize_domain, "example.com.")
    assert "trailing dot" in error.message
    assert "'example.com'" in error.message


def test_normalize_domain_message_explains_single_label() -> None:
    error = _refused(validation.normalize_domain, "localhost")
    assert "at least one dot" in error.message


def test_normalize_domain_message_explains_empty_label() -> None:
    assert "empty label" in _refused(validation.normalize_domain, "a..example").message


def test_normalize_domain_message_gives_label_length_limit() -> None:
    assert "63" in _refused(validation.normalize_domain, "a" * 64 + ".com").message


def test_normalize_domain_message_gives_total_length_limit() -> None:
    assert "253" in _refused(validation.normalize_domain, "a" * 300).message


def test_normalize_domain_message_names_the_bad_punycode_label() -> None:
    assert "xn--zz" in _refused(validation.normalize_domain, "xn--zz.example").message


def test_normalize_domain_message_says_numeric_tld_looks_like_an_ip() -> None:
    assert "IP address" in _refused(validation.normalize_domain, "10.0.0.1").message


def test_normalize_domain_message_mentions_spaces() -> None:
    assert "spaces" in _refused(validation.normalize_domain, "exa mple.com").message


def test_normalize_domain_message_mentions_line_breaks() -> None:
    assert "line breaks" in _refused(validation.normalize_domain, "example.com\n").message


def test_normalize_domain_errors_carry_the_field_name() -> None:
    assert _refused(validation.normalize_domain, "bad domain", field="name").field == "name"


def test_normalize_domain_accepts_exactly_63_character_label() -> None:
    name = "a" * 63 + ".com"
    assert validation.normalize_domain(name) == name


def test_normalize_domain_accepts_exactly_253_characters() -> None:
    name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(name) == 253
    assert validation.normalize_domain(name) == name
    _refused(validation.normalize_domain, name + "d")


def test_normalize_domain_lowercases_ascii() -> None:
    assert validation.normalize_domain("Mail.EXAMPLE.Com") == "mail.example.com"


def test_normalize_domain_accepts_hyphen_inside_label_and_digits() -> None:
    assert validation.normalize_domain("my-host2.example.com") == "my-host2.example.com"


def test_normalize_domain_converts_unicode_to_punycode() -> None:
    assert validation.normalize_domain("bücher.example") == "xn--bcher-kva.example"


def test_normalize_domain_lowercases_unicode_labels() -> None:
    assert validation.normalize_domain("ÉXAMPLE.Com") == validation.normalize_domain("éxample.com")
    assert validation.normalize_domain("ÉXAMPLE.Com") == "xn--xample-9ua.com"


def test_normalize_domain_accepts_punycode_as_given_in_any_case() -> None:
    assert validation.normalize_domain("XN--BCHER-KVA.Example") == "xn--bcher-kva.example"


def test_domain_to_unicode_round_trips_idn() -> None:
    ascii_name = validation.normalize_domain("bücher.example")
    assert validation.domain_to_unicode(ascii_name) == "bücher.example"
    assert validation.normalize_domain(validation.domain_to_unicode(ascii_name)) == ascii_name


def test_domain_to_unicode_leaves_ascii_and_undecodable_names_alone() -> None:
    assert validation.domain_to_unicode("example.com") == "example.com"
    assert validation.domain_to_unicode("xn--zz.example") == "xn--zz.example"


def test_normalize_hostname_follows_domain_rules() -> None:
    assert validation.normalize_hostname("MX.Example.com") == "mx.example.com"
    assert _refused(validation.normalize_hostname, "mx", field="hostname").field == "hostname"


# --- IDNA 2008 (RFC 5891/5892, UTS #46 mapping) -----------------------------------------------


SYMBOLS_REFUSED = "it holds symbols that are not allowed in names"


def test_an_a_label_that_decodes_to_symbols_is_refused_in_plain_words() -> None:
    message = _refused(validation.normalize_domain, "xn--zzinjd.test").message
    assert message.startswith(
        "xn--zzinjd is not a valid international domain name (IDNA 2008): "
        "it holds symbols that are not allowed in names."
    )
    assert "⩓⩗⩖⩌" in message


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("\u2603.test", SYMBOLS_REFUSED),
        ("mail.\U0001f600.test", SYMBOLS_REFUSED),
        ("xn--ls8h.test", SYMBOLS_REFUSED),
        ("\u00bd.test", SYMBOLS_REFUSED),
        ("xn--wca.test", "upper-case letters"),
        ("\u0301a.test", "starts with a combining mark"),
        ("a\u30fbb.test", "U+30FB KATAKANA MIDDLE DOT"),
        ("\u05e91a.test", "right-to-left and left-to-right"),
        ("b\u00fc_cher.test", "punctuation"),
        ("a" * 60 + "\u00fc.test", "longer than 63 characters once encoded"),
    ],
)
def test_labels_idna_2008_refuses_are_refused_with_the_reason(name: str, reason: str) -> None:
    message = _refused(validation.normalize_domain, name).message
    assert "is not a valid international domain name (IDNA 2008)" in message
    assert reason in message


def test_an_idna_refusal_names_the_label_as_typed() -> None:
    message = _refused(validation.normalize_domain, "mail.\u2603.example").message
    assert message.startswith("\u2603 is not a valid international domain name")


@pytest.mark.parametrize(
    ("name", "ascii_name"),
    [
        ("b\u00fccher.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("m\u00fcller.test", "xn--mller-kva.test"),
        ("stra\u00dfe.de", "xn--strae-oqa.de"),
        ("\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", "example.com"),
        ("mail\u3002b\u00fccher.example", "mail.xn--bcher-kva.example"),
        ("B\u00dcCHER.Example", "xn--bcher-kva.example"),
    ],
)
def test_idna_2008_names_are_accepted_after_uts46_mapping(name: str, ascii_name: str) -> None:
    assert validation.normalize_domain(name) == ascii_name


def test_sharp_s_keeps_its_own_name_under_idna_2008() -> None:
    # IDNA 2003 turned straße into strasse, another domain; IDNA 2008 keeps ß.
    assert validation.normalize_domain("stra\u00dfe.de") != validation.normalize_domain("strasse.de")
    assert validation.domain_to_unicode("xn--strae-oqa.de") == "stra\u00dfe.de"


def test_domain_to_unicode_keeps_an_undecodable_label_and_decodes_the_others() -> None:
    assert validation.domain_to_unicode("xn--zzinjd.xn--bcher-kva.example") == (
        "xn--zzinjd.b\u00fccher.example"
    )


def test_normalize_hostname_and_address_refuse_idna_2008_violations_with_their_field() -> None:
    assert _refused(validation.normalize_hostname, "mail.xn--zzinjd.test", field="hostname").field == (
        "hostname"
    )
    error = _refused(validation.normalize_address, "jane@xn--zzinjd.test", field="destinations")
    assert SYMBOLS_REFUSED in error.message
    assert error.field == "destinations"


# --- UTS #39 mixed scripts (Highly Restrictive) --------------------------------------------------


def test_cyrillic_letters_among_latin_ones_are_refused_in_plain_words() -> None:
    # The a in pаypal is U+0430 CYRILLIC SMALL LETTER A.
    assert _refused(validation.normalize_domain, "p\u0430ypal.com").message == (
        "The name mixes Latin and Cyrillic letters in one label (p\u0430ypal): "
        "such names imitate others and are refused."
    )


@pytest.mark.parametrize(
    ("name", "scripts"),
    [
        ("xn--pypal-4ve.com", "Latin and Cyrillic"),
        ("mail.P\u0410YPAL.com", "Latin and Cyrillic"),
        ("\u03b1\u03b2\u03b3abc.test", "Greek and Latin"),
        ("\u03f2\u0430t.test", "Greek, Cyrillic and Latin"),
        # Armenian is what Moderately Restrictive would let pass: \u0585 looks like o.
        ("\u0585range.test", "Armenian and Latin"),
        ("\u65e5\u672c\u043f\u0440\u0438\u043c\u0435\u0440.test", "Han and Cyrillic"),
        # Hangul and kana are never written together, though each goes with Han.
        ("\ud55c\uad6d\u3072\u3089\u304c\u306a.test", "Hangul and Hiragana"),
    ],
)
def test_labels_mixing_scripts_are_refused(name: str, scripts: str) -> None:
    message = _refused(validation.normalize_domain, name).message
    assert f"mixes {scripts} letters in one label" in message
    assert "imitate others" in message


def test_a_mixed_script_a_label_is_shown_decoded_and_as_written() -> None:
    message = _refused(validation.normalize_domain, "xn--pypal-4ve.com").message
    assert "(p\u0430ypal, written xn--pypal-4ve)" in message


@pytest.mark.parametrize(
    "name",
    [
        "\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",  # Cyrillic
        "\u043f\u0440\u0438\u043c\u0435\u0440-2.\u0440\u0444",  # Cyrillic with a digit and hyphen
        "\u03b5\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac.gr",  # Greek
        "\u65e5\u672c\u8a9e.jp",  # Han
        "\u3072\u3089\u304c\u306a\u30ab\u30bf\u30ab\u30ca\u6f22\u5b57.jp",  # Han, Hiragana, Katakana
        "\u30c9\u30e1\u30a4\u30f3\u540d\u4f8b.jp",  # Katakana with its length mark, and Han
        "sony\u30bd\u30cb\u30fc.jp",  # Latin with Japanese
        "\u4e2d\u6587\ud55c\uad6d.kr",  # Han with Hangul
        "\u3105\u3106\u4e2d\u6587.tw",  # Bopomofo with Han
        "b\u00fccher-24.example",  # Latin with digits and hyphens
        "ab\u0301c.test",  # a combining mark goes with the letters around it
        "\u043f\u0440\u0438\u043c\u0435\u0440.example.com",  # each label has one script
    ],
)
def test_labels_in_one_script_or_a_cjk_writing_system_are_accepted(name: str) -> None:
    ascii_name = validation.normalize_domain(name)
    assert ascii_name.isascii()
    assert validation.domain_to_unicode(ascii_name) == name
    assert validation.normalize_domain(ascii_name) == ascii_name


def test_normalize_address_and_hostname_refuse_mixed_scripts() -> None:
    assert "Latin and Cyrillic" in _refused(validation.normalize_address, "jane@p\u0430ypal.com").message
    assert "Latin and Cyrillic" in _refused(validation.normalize_hostname, "mail.p\u0430ypal.com").message
    assert "Latin and Cyrillic" in _refused(validation.validate_url, "https://p\u0430ypal.com/").message


# --- normalize_local_part -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "local_part",
    [
        "",
        "john doe",
        " john",
        "john ",
        '"john"',
        'jo"hn',
        "jo'hn",
        "jo%hn",
        "jo/hn",
        "jo{hn",
        "jo}hn",
        "jo|hn",
        "jo=hn",
        "jo`hn",
        "jo\\hn",
        "jo,hn",
        "jo@hn",
        "jo:hn",
        "jo;hn",
        "jo<hn>",
        ".john",
        "john.",
        "jo..hn",
        "jöhn",
        "ü",
        "jo\x00hn",
        "jo\nhn",
        "john\r",
        "jo\u200bhn",
        "a" * 65,
    ],
)
def test_normalize_local_part_refuses_bad_local_parts(local_part: str) -> None:
    _refused(validation.normalize_local_part, local_part)


def test_normalize_local_part_refuses_non_strings() -> None:
    _refused(validation.normalize_local_part, None)


def test_normalize_local_part_message_gives_the_length_limit() -> None:
    assert "64" in _refused(validation.normalize_local_part, "a" * 65).message


def test_normalize_local_part_message_explains_what_is_allowed() -> None:
    message = _refused(validation.normalize_local_part, "jo..hn").message
    assert "double dots" in message
    assert "'jo..hn'" in message


def test_normalize_local_part_accepts_exactly_64_characters() -> None:
    assert validation.normalize_local_part("a" * 64) == "a" * 64


@pytest.mark.parametrize("local_part", ["john", "john.doe", "john_doe", "john-doe", "john+tag", "j0hn", "1"])
def test_normalize_local_part_accepts_ordinary_local_parts(local_part: str) -> None:
    assert validation.normalize_local_part(local_part) == local_part


def test_normalize_local_part_lowercases() -> None:
    assert validation.normalize_local_part("John.DOE") == "john.doe"


def test_normalize_local_part_refuses_non_ascii_that_lowercases_to_ascii() -> None:
    _refused(validation.normalize_local_part, "\u212aate")


# --- split_address / normalize_address ----------------------------------------------------------


def test_split_address_returns_normalized_parts() -> None:
    assert validation.split_address("John.Doe@Bücher.Example") == ("john.doe", "xn--bcher-kva.example")


def test_normalize_address_joins_normalized_parts() -> None:
    assert validation.normalize_address("John@EXAMPLE.com") == "john@example.com"


@pytest.mark.parametrize(
    "address",
    ["", "john", "john.example.com", "john@@example.com", "a@b@example.com", "@example.com", "john@"],
)
def test_normalize_address_refuses_anything_but_one_at_with_both_sides(address: str) -> None:
    _refused(validation.normalize_address, address)


def test_normalize_address_message_says_it_is_not_an_address() -> None:
    assert "not an email address" in _refused(validation.normalize_address, "a@b@c.com").message


def test_normalize_address_refuses_a_bad_domain_part() -> None:
    assert "trailing dot" in _refused(validation.normalize_address, "john@example.com.").message


def test_split_address_refuses_non_strings() -> None:
    _refused(validation.split_address, None)


# --- validate_url -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["https://example.com", "http://example.com/path?q=1#top", "https://mail.example.com:8443/x"],
)
def test_validate_url_accepts_http_and_https_urls(url: str) -> None:
    assert validation.validate_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "",
        "example.com",
        "//example.com/path",
        "ftp://example.com/",
        "javascript:alert(1)",
        "data:text/html,hi",
        "https://",
        "https://localhost/",
        "https://10.0.0.1/",
        "https://example.com./",
        "https://exa mple.com/",
        'https://example.com/"onload',
        "https://example.com/'",
        "https://example.com/<script>",
        "https://example.com/{x}",
        "https://example.com/\\",
        "https://example.com/\n",
        "https://example.com/" + "a" * 2000,
    ],
)
def test_validate_url_refuses_bad_urls(url: str) -> None:
    _refused(validation.validate_url, url)


def test_validate_url_message_asks_for_http_scheme() -> None:
    assert "https://" in _refused(validation.validate_url, "ftp://example.com/").message


def test_validate_url_refuses_unbalanced_ipv6_bracket_with_validation_error() -> None:
    _refused(validation.validate_url, "http://[")


# --- normalize_login ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "login", ["admin", "Admin.Two", "a_b-c", "reseller@example.com", "1" * 100, "9lives"]
)
def test_normalize_login_accepts_and_lowercases(login: str) -> None:
    assert validation.normalize_login(login) == login.lower()


@pytest.mark.parametrize(
    "login", ["", ".admin", "-admin", "@admin", "ad min", "admin\n", "ad'min", "adm%n", "ädmin", "1" * 101]
)
def test_normalize_login_refuses_bad_logins(login: str) -> None:
    assert "at most 100" in _refused(validation.normalize_login, login).message


def test_normalize_login_refuses_non_strings() -> None:
    _refused(validation.normalize_login, None)


# --- normalize_display_name ---------------------------------------------------------------------


def test_normalize_display_name_strips_and_keeps_unicode() -> None:
    assert validation.normalize_display_name("  Jöhn Doe  ") == "Jöhn Doe"


def test_normalize_display_name_turns_none_into_empty() -> None:
    assert validation.normalize_display_name(None) == ""


def test_normalize_display_name_accepts_exactly_200_characters() -> None:
    assert validation.normalize_display_name("x" * 200) == "x" * 200


@pytest.mark.parametrize("name", ["x" * 201, "John\nDoe", "John\x00", "John\rDoe", "Jo\u2028hn"])
def test_normalize_display_name_refuses_long_names_and_control_characters(name: str) -> None:
    _refused(validation.normalize_display_name, name)


def test_normalize_display_name_message_gives_the_length_limit() -> None:
    assert "200" in _refused(validation.normalize_display_name, "x" * 201).message


# --- normalize_tenant_name ----------------------------------------------------------------------


def test_normalize_tenant_name_strips() -> None:
    assert validation.normalize_tenant_name("  Acme Hosting ") == "Acme Hosting"


def test_normalize_tenant_name_accepts_exactly_100_characters() -> None:
    assert validation.normalize_tenant_name("t" * 100) == "t" * 100


@pytest.mark.parametrize("name", ["", "   ", None, "t" * 101, "Acme\nHosting", "Acme\x00"])
def test_normalize_tenant_name_refuses_empty_long_and_control_characters(name) -> None:
    _refused(validation.normalize_tenant_name, name)


def test_normalize_tenant_name_message_says_it_is_required() -> None:
    assert "required" in _refused(validation.normalize_tenant_name, "  ").message


@pytest.mark.parametrize("name", ["*.example.com", "mail_1.example.com", "_dmarc.example.com"])
def test_a_server_name_names_one_real_host(name: str) -> None:
    with pytest.raises(ValidationError, match="no wildcards or underscores"):
        validation.normalize_hostname(name)
    assert validation.normalize_hostname("Mail.Example.com") == "mail.example.com"
