"""Where a webhook may go: the rules for its URL, and for the address a delivery connects to.

Webhook URLs come from application settings, so whoever can create or change an application
chooses where the server sends signed POSTs. Without rules the server is a proxy into its own
network: `http://169.254.169.254/...` (cloud metadata), `http://127.0.0.1:5432`, an admin
panel on `10.0.0.5`. So, by default:

- the URL is `http` or `https`, with a host, a port in 1..65535, no credentials (they were
  never sent, and they would end up in logs) and no control characters or spaces;
- a delivery connects only to public unicast addresses. The check is made on the addresses
  the name resolves to at delivery time, and the connection goes to exactly the address that
  was checked (never resolved twice), so a name that resolves differently later (DNS
  rebinding) cannot slip past a check made when the application was created.

`allow_private` lifts the address rule (development, receivers inside a private network);
the URL rules always hold. A refused destination is final for that webhook: it is marked
dead with the reason, never retried and never dropped silently.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "MAX_URL_CHARS",
    "AddressPolicy",
    "RefusedDestination",
    "check_destination",
    "loggable_url",
    "redact_url",
    "resolved_addresses",
    "url_problem",
]

MAX_URL_CHARS = 2000

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Prefixes that carry an IPv4 address inside an IPv6 one: NAT64 (RFC 6052) would reach the
# embedded address through a translator, so it is judged by that address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)


class RefusedDestination(Exception):
    """A webhook destination the rules refuse; the message says why, for people."""


def url_problem(url: str) -> str | None:
    """Why `url` cannot receive webhooks (a short phrase), or None when its form is fine."""
    if not url:
        return "is empty"
    if len(url) > MAX_URL_CHARS:
        return f"is longer than {MAX_URL_CHARS} characters"
    if any(ord(character) < 0x21 or ord(character) == 0x7F for character in url):
        return "contains a space or a control character"
    if not url.isascii():
        return "must be ASCII (percent-encode the path; use the xn-- form of the host name)"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "has a port outside 1-65535"
    if parts.scheme.lower() not in ("http", "https"):
        return "must use http or https"
    if "@" in parts.netloc:
        return "must not carry credentials (user:password@)"
    if not parts.hostname:
        return "has no host"
    if port == 0:
        return "has a port outside 1-65535"
    return None


def redact_url(url: str) -> str:
    """The URL without any credentials it carries, for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable URL)"
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def loggable_url(url: str) -> str:
    """The URL for the event log: no credentials, and no query, where receivers often carry
    a token (`?token=...`); a query is shown as `?***`, so one can tell it was there."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable URL)"
    netloc = parts.netloc.rpartition("@")[2]
    hidden = "***@" if "@" in parts.netloc else ""
    return parts._replace(
        netloc=hidden + netloc, query="***" if parts.query else "", fragment=""
    ).geturl()


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which addresses a delivery may connect to (see the module docstring)."""

    allow_private: bool = False

    def refusal(self, address: str) -> str | None:
        """Why a delivery must not connect to `address` (an IP literal), or None."""
        if self.allow_private:
            return None
        ip = ipaddress.ip_address(address.partition("%")[0])  # drop an IPv6 zone
        kind = _kind(ip)
        if kind is None:
            return None
        return f"{address} is a {kind} address"

    def allowed(self, addresses: list[str], *, host: str) -> list[str]:
        """The addresses of `addresses` a delivery may use; raises if there is none."""
        allowed = [address for address in addresses if self.refusal(address) is None]
        if not allowed:
            reasons = "; ".join(dict.fromkeys(str(self.refusal(a)) for a in addresses))
            raise RefusedDestination(f"{host}: {reasons}")
        return allowed

    def check_literal(self, host: str) -> str | None:
        """For a URL's host: why it is refused if it is an IP literal, else None (a name is
        judged by what it resolves to)."""
        try:
            ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return None
        return self.refusal(host)


def _kind(ip: IPAddress) -> str | None:
    """What makes `ip` non-public, in words, or None for a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or (
            ip.sixtofour
            if ip.sixtofour is not None
            else ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
            if ip in _NAT64
            else None
        )
        if embedded is not None:
            return _kind(embedded)
        if ip.teredo is not None:
            return _kind(ip.teredo[1])
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("shared (carrier-grade NAT)", isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED),
        ("non-public", not ip.is_global),
    )
    for kind, matches in checks:
        if matches:
            return kind
    return None


def resolved_addresses(infos: Sequence[tuple[Any, ...]]) -> list[str]:
    """The distinct addresses of a `getaddrinfo` answer, in its order."""
    addresses: list[str] = []
    for family, _, _, _, address in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            host = str(address[0])
            if host not in addresses:
                addresses.append(host)
    return addresses


async def check_destination(
    url: str, policy: AddressPolicy, *, resolve_timeout_s: float = 3.0
) -> str | None:
    """Judge a webhook URL when an application is created or changed.

    Raises `RefusedDestination` for a URL of the wrong form, an IP literal the policy refuses,
    or a name that resolves to any address it refuses. Returns a warning (and accepts the URL)
    when the name cannot be resolved from here: deliveries check it again, every time.
    """
    problem = url_problem(url)
    if problem is not None:
        raise RefusedDestination(f"{redact_url(url)} {problem}")
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal_refusal = policy.check_literal(host)
    if literal_refusal is not None:
        raise RefusedDestination(f"{url}: {literal_refusal}")
    if policy.allow_private:
        return None
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(resolve_timeout_s):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError):
        return f"{host} could not be resolved from here; each delivery checks where it points"
    refusals = [
        reason
        for reason in (policy.refusal(a) for a in resolved_addresses(infos))
        if reason is not None
    ]
    if refusals:
        raise RefusedDestination(
            f"{url}: {host} resolves to where webhooks may not go: {'; '.join(refusals)}"
        )
    return None
