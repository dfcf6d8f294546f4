"""SSRF guard for tenant-supplied endpoints and alert webhooks: http(s) only, and no private, loopback, link-local,
multicast or metadata addresses (nor 6to4, IPv4-compatible, or NAT64 of a non-public IPv4 address, which reach IPv4
hosts through a translator) unless `ALLOW_PRIVATE_ENDPOINTS` is on (the embedded dev default; off in production).

Checked when an endpoint is saved, again before it is called (DNS answers can change), and once more on the
addresses the connection actually dials (`connect_refusal`, called by the upstream transports' resolvers), so a
name that answers a public address to the check and a private one to the connection (DNS rebinding) is refused
too. Outbound calls never follow redirects (the provider client's default), so a public URL cannot bounce into
the network. Synchronous calls to tenant URLs (alert webhooks) use `guarded_client()`, whose connections get the
same check on the addresses they dial.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import certifi
import httpcore
import httpx
from django.conf import settings

_DNS_TTL = 10.0
_dns_lock = threading.Lock()
_dns_cache: dict[tuple[str, int], tuple[float, list[str]]] = {}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_6TO4 = ipaddress.ip_network("2002::/16")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")
_METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"}


class BlockedAddress(ValueError):
    """The URL may not be called: wrong scheme, unresolvable, or a non-public address."""


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def _resolve_cached(host: str, port: int) -> list[str]:
    now = time.monotonic()
    entry = _dns_cache.get((host, port))
    if entry and entry[0] > now:
        return entry[1]
    addresses = _resolve(host, port)
    with _dns_lock:
        if len(_dns_cache) > 5_000:
            _dns_cache.clear()
        _dns_cache[(host, port)] = (now + _DNS_TTL, addresses)
    return addresses


def clear_dns_cache() -> None:
    with _dns_lock:
        _dns_cache.clear()


def blocked_reason(address: str) -> str | None:
    """Why an IP address is not public (None when it is)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _6TO4:  # tunnels to the embedded IPv4 address through whatever relay the network has
            return "a 6to4 address (2002::/16)"
        if ip in _V4_COMPATIBLE and int(ip) > 1:  # ::a.b.c.d, deprecated; some stacks still route it as IPv4
            return "an IPv4-compatible address (::a.b.c.d)"
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if str(ip) in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"):
        return "a cloud metadata address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or not ip.is_global:
        return "a reserved (non-public) address"
    return None


def check_url(url: str, *, allow_private: bool | None = None, use_cache: bool = True) -> None:
    """Raise BlockedAddress unless `url` is http(s) and (in production) every address of its host is public."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BlockedAddress("The URL is not valid.") from None
    if parts.scheme not in ("http", "https"):
        raise BlockedAddress("Only http:// and https:// URLs are allowed.")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise BlockedAddress("The URL has no host.")
    if parts.username or parts.password:
        raise BlockedAddress("Put credentials in the API key field, not in the URL.")
    if allow_private is None:
        allow_private = settings.ALLOW_PRIVATE_ENDPOINTS
    if allow_private:
        return
    if host in _METADATA_HOSTS or host == "localhost" or host.endswith(".localhost"):
        raise BlockedAddress(f"The host {host} is an internal address; only public endpoints are allowed.")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        ipaddress.ip_address(host)
        addresses = [host]
    except ValueError:
        try:
            addresses = _resolve_cached(host, port) if use_cache else _resolve(host, port)
        except (OSError, UnicodeError):
            raise BlockedAddress(f"The host {host} does not resolve (check the spelling).") from None
    if not addresses:
        raise BlockedAddress(f"The host {host} does not resolve (check the spelling).")
    for address in addresses:
        reason = blocked_reason(address)
        if reason:
            shown = host if host == address else f"{host} ({address})"
            raise BlockedAddress(
                f"The host {shown} is {reason}; only public endpoints are allowed "
                "(ALLOW_PRIVATE_ENDPOINTS is off)."
            )


def operator_hosts() -> set[str]:
    """Hosts of the operator's own upstream URLs (`<PROVIDER>_BASE_URL`: a company proxy, a regional endpoint),
    which may be private: the operator chose them, no tenant can."""
    hosts = set()
    for name, value in os.environ.items():
        if name.endswith("_BASE_URL") and value.strip():
            host = urlsplit(value.strip()).hostname
            if host:
                hosts.add(host.rstrip(".").lower())
    return hosts


def guarded(host: str) -> bool:
    """Whether connections to `host` are checked at connect time (not for the operator's own upstreams)."""
    return not settings.ALLOW_PRIVATE_ENDPOINTS and host.rstrip(".").lower() not in operator_hosts()


def connect_refusal(host: str, addresses: Iterable[str]) -> str | None:
    """Why a connection to `host` at these (just resolved) addresses must not be made, or None."""
    return address_refusal(host, addresses) if guarded(host) else None


def address_refusal(host: str, addresses: Iterable[str]) -> str | None:
    """The first of `addresses` that is not public, as a reason (for a host already known to be guarded)."""
    for address in addresses:
        reason = blocked_reason(address)
        if reason:
            return (
                f"{host} resolved to {address}, {reason}, when connecting; only public endpoints are allowed "
                "(ALLOW_PRIVATE_ENDPOINTS is off)"
            )
    return None


# --- the guarded transport for synchronous outbound HTTP to tenant-supplied URLs (alert webhooks) ---------------


class _GuardedSyncBackend(httpcore.SyncBackend):
    """httpcore's blocking backend that resolves the host itself, refuses the connection unless every address is
    public, and dials the address it checked (so a DNS answer that changes between the check and the connect, DNS
    rebinding, cannot reach the network). TLS still verifies the URL's name and sends it as SNI. Unlike the LLM
    transport, the operator's own upstream hosts get no exception here: nothing tenant-supplied is trusted."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> Any:
        if not settings.ALLOW_PRIVATE_ENDPOINTS:
            name = host.rstrip(".").lower()
            try:
                addresses = [str(ipaddress.ip_address(name))]
            except ValueError:
                try:
                    addresses = _resolve(name, port)
                except (OSError, UnicodeError):
                    raise BlockedAddress(f"The host {name} does not resolve (check the spelling).") from None
            reason = address_refusal(name, addresses) if addresses else f"{name} does not resolve"
            if reason:
                raise BlockedAddress(reason)
            host = addresses[0]
        return super().connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )


def guarded_client(*, timeout: float) -> httpx.Client:
    """An httpx client for calls to tenant-supplied URLs: every connection goes through the SSRF guard (raising
    BlockedAddress), no redirects are followed, no proxy or netrc from the environment is used."""
    transport = httpx.HTTPTransport(trust_env=False)
    transport._pool = httpcore.ConnectionPool(
        ssl_context=ssl.create_default_context(cafile=certifi.where()), network_backend=_GuardedSyncBackend()
    )
    return httpx.Client(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False)
