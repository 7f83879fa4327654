"""Where webhooks may go: the URL rules and the address rules, case by case."""

from __future__ import annotations

import pytest

from opendispatch.webhooks.destinations import (
    AddressPolicy,
    RefusedDestination,
    check_destination,
    loggable_url,
    redact_url,
    url_problem,
)

DEFAULT = AddressPolicy()


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/status",
        "http://hooks.example.com:8080/a/b?c=d&e=f",
        "https://[2001:db8::1]:8443/x",
        "HTTPS://hooks.example.com/",
        "https://hooks.example.com:65535/",
        "https://hooks.example.com:1/",
    ],
)
def test_urls_of_a_valid_form(url: str) -> None:
    assert url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "is empty"),
        ("ftp://hooks.example.com/", "must use http or https"),
        ("file:///etc/passwd", "must use http or https"),
        ("gopher://127.0.0.1:6379/_FLUSHALL", "must use http or https"),
        ("hooks.example.com/status", "must use http or https"),
        ("https://user:secret@hooks.example.com/", "must not carry credentials (user:password@)"),
        ("https://user@hooks.example.com/", "must not carry credentials (user:password@)"),
        ("https://hooks.example.com:0/", "has a port outside 1-65535"),
        ("https://hooks.example.com:65536/", "has a port outside 1-65535"),
        ("https://hooks.example.com:-1/", "has a port outside 1-65535"),
        ("https:///status", "has no host"),
        ("https://hooks.example.com/a b", "contains a space or a control character"),
        ("https://hooks.example.com/\r\nX-Injected: 1", "contains a space or a control character"),
        ("https://hooks.example.com/\x00", "contains a space or a control character"),
        ("https://hooks.example.com/\x7f", "contains a space or a control character"),
        (
            "https://bücher.example/",
            "must be ASCII (percent-encode the path; use the xn-- form of the host name)",
        ),
        ("https://hooks.example.com/" + "a" * 2000, "is longer than 2000 characters"),
    ],
)
def test_urls_of_a_refused_form(url: str, problem: str) -> None:
    assert url_problem(url) == problem


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("192.0.2.10", "private"),  # documentation range
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
    ],
)
def test_non_public_addresses_are_refused_by_default(address: str, kind: str) -> None:
    assert DEFAULT.refusal(address) == f"{address} is a {kind} address"
    assert AddressPolicy(allow_private=True).refusal(address) is None


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert DEFAULT.refusal(address) is None


def test_allowed_keeps_the_public_addresses_of_a_mixed_answer() -> None:
    assert DEFAULT.allowed(["10.0.0.1", "93.184.216.34"], host="h") == ["93.184.216.34"]
    with pytest.raises(RefusedDestination, match=r"^h: 10\.0\.0\.1 is a private address$"):
        DEFAULT.allowed(["10.0.0.1"], host="h")


def test_redact_url_hides_credentials_only() -> None:
    assert redact_url("https://u:p@h.example/x?y=1") == "https://***@h.example/x?y=1"
    assert redact_url("https://h.example/x") == "https://h.example/x"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/status",
        "http://[::1]/status",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:9000/status",  # a name, judged by what it resolves to
        "http://2130706433/status",  # 127.0.0.1 written as one number
    ],
)
async def test_check_destination_refuses_what_points_inside(url: str) -> None:
    with pytest.raises(RefusedDestination, match=r"is a (loopback|link-local) address"):
        await check_destination(url, DEFAULT)
    assert await check_destination(url, AddressPolicy(allow_private=True)) is None


@pytest.mark.anyio
async def test_check_destination_warns_but_accepts_a_name_it_cannot_resolve() -> None:
    warning = await check_destination("https://hooks.invalid/status", DEFAULT)
    assert warning == (
        "hooks.invalid could not be resolved from here; each delivery checks where it points"
    )


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("https://hooks.example.com/status", "https://hooks.example.com/status"),
        ("https://hooks.example.com:8443/s?token=abc&x=1", "https://hooks.example.com:8443/s?***"),
        ("https://user:hunter2@hooks.example.com/s#frag", "https://***@hooks.example.com/s"),
        ("http://[2001:db8::1]:8080/a/b?", "http://[2001:db8::1]:8080/a/b"),
    ],
)
def test_a_url_in_the_log_shows_neither_credentials_nor_query(url: str, logged: str) -> None:
    assert loggable_url(url) == logged
