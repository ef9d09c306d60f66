"""Receiver URL checks: what a subscriber may point the worker at.

Syntax is checked on subscribe (422). With ``webhook_allow_private`` off, the host must
also resolve only to public addresses; the worker re-checks before each send, so a DNS
answer changed after subscribing cannot aim it at internal services (a small window
between that check and the connection remains). It is on by default so a monitor next
to the trainer can call receivers on the same host or network.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
ALLOWED_SCHEMES = ("http", "https")


class UnsafeUrl(ValueError):
    """The URL may not be used as a webhook receiver."""


def check_syntax(url: str) -> str:
    """The URL, stripped, if it is an http(s) URL with a host and no credentials."""
    url = url.strip()
    if not url or len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"url must be 1-{MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise UnsafeUrl("url must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a bad port
    except ValueError:  # its message repeats part of the url: error answers never echo input
        raise UnsafeUrl("url is malformed (its host or port cannot be parsed)") from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise UnsafeUrl("url scheme must be http or https")
    if not parts.hostname:
        raise UnsafeUrl("url must have a host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeUrl("url must not contain credentials; use the signing secret instead")
    if port == 0:
        raise UnsafeUrl("url port must be 1-65535")
    return url


# IPv6 ranges whose low 32 bits are an IPv4 address that the packet really goes to.
_IPV4_IN_LOW_BITS = (
    ipaddress.IPv6Network("::ffff:0:0/96"),  # IPv4-mapped
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated, still routed by some stacks)
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64 well-known prefix (RFC 6052)
)
# Local-use NAT64 (RFC 8215): the IPv4 part may sit anywhere, so the whole range is refused.
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address stands for (mapped, compatible, NAT64, 6to4, Teredo)."""
    embedded = [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)] if any(ip in net for net in _IPV4_IN_LOW_BITS) else []
    if ip.sixtofour is not None:
        embedded.append(ip.sixtofour)
    if ip.teredo is not None:
        embedded.extend(ip.teredo)  # (server, client): either may be internal
    return embedded


def _is_public_v4(ip: ipaddress.IPv4Address) -> bool:
    return ip.is_global and not ip.is_multicast


def _is_public(address: str) -> bool:
    """True only for a global unicast address that embeds no private IPv4 address.

    Why so strict: ``[::127.0.0.1]``, ``[64:ff9b::a9fe:a9fe]`` or a 6to4 address reach the
    embedded IPv4 host through the kernel or a translator, and the stdlib's ``is_global``
    judges the IPv6 form only (it calls NAT64 and 6to4 addresses global).
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv4Address):
        return _is_public_v4(ip)
    if ip in _NAT64_LOCAL:
        return False
    embedded = _embedded_ipv4(ip)
    if any(ip in net for net in _IPV4_IN_LOW_BITS):
        return all(_is_public_v4(v4) for v4 in embedded)  # the IPv6 form itself is never "global"
    return ip.is_global and not ip.is_multicast and all(_is_public_v4(v4) for v4 in embedded)


def check_destination(url: str, allow_private: bool) -> None:
    """UnsafeUrl unless private addresses are allowed or the host resolves only to public ones."""
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise UnsafeUrl("url host does not resolve") from None
    addresses = {info[4][0] for info in infos}
    if not addresses or not all(_is_public(addr) for addr in addresses):
        raise UnsafeUrl("url host resolves to a private, loopback or reserved address "
                        "(set MONITOR_WEBHOOK_ALLOW_PRIVATE=true to allow)")


def origin(url: str) -> str:
    """``scheme://host:port`` (lower-cased): one receiver, whatever its paths or subscriptions."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        return f"{scheme}://{(parts.hostname or '').lower()}:{parts.port or (443 if scheme == 'https' else 80)}"
    except ValueError:
        return url


def redact(url: str) -> str:
    """Scheme, host and port only: paths of e.g. Slack URLs are secrets, so logs get this."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}/…"
    except ValueError:
        return "<invalid url>"
