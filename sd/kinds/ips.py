"""IP addresses: one normalization, one family, one ``host:port``."""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from functools import lru_cache
from typing import Any

from sd.kinds.reports import INVALID_IP, LINK_LOCAL_IP, SCOPED_IP, UNSPECIFIED_IP, Report, ignore
from sd.kinds.shared import intern


class IPFamily(StrEnum):
    IPV4 = "ipv4"
    IPV6 = "ipv6"


def ip_family(ip: str) -> IPFamily:
    """The family of a canonical IP (as ``normalize_ip`` returns it)."""
    return IPFamily.IPV6 if ":" in ip else IPFamily.IPV4


def hostport(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets (Go's net.JoinHostPort)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def target_address(host: str, port: int) -> str:
    """``host:port``; port 0: the bare host (kubernetes_sd's container without ports), an IPv6
    one in brackets so that it is a URL host and "append a port" relabelings work."""
    if port:
        return hostport(host, port)
    return f"[{host}]" if ":" in host else host


def host_of(address: str) -> str:
    """The host of a ``target_address``."""
    if address.startswith("["):
        return address[1 : address.index("]")]
    return address.partition(":")[0]


def is_ip(value: str) -> bool:
    """Whether a stored address value is an IP. Canonical IPs are the only values
    that contain ':' or are all digits and dots (hostnames are kept as given)."""
    return ":" in value or (value[:1].isdigit() and value.replace(".", "").isdigit())


def normalize_ip(value: Any, where: str, report: Report = ignore) -> str | None:
    """Canonical compressed form, IPv4-mapped IPv6 as IPv4; None (reported) when unusable."""
    if not isinstance(value, str):
        report(INVALID_IP, f"{where}: not an IP: {value!r}")
        return None
    ip, reason, why = _canonical(value)
    if ip is None:
        report(reason, f"{where}: {why}")
    return ip


@lru_cache(maxsize=65536)
def _canonical(value: str) -> tuple[str | None, str, str]:
    """(canonical IP, "", "") or (None, reason, why). Cached: a node's IPs repeat in every event."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None, INVALID_IP, f"not an IP: {value!r}"
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        # "fd00::5%eth0": the zone only means something on the host that wrote it, and kept
        # it would make a second target for fd00::5 and put a '%' into __address__.
        return None, SCOPED_IP, f"scoped address {value!r} (with a zone id) is not a target"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return None, UNSPECIFIED_IP, f"unspecified address {value!r} is not a target"
    if ip.is_link_local:
        return None, LINK_LOCAL_IP, f"link-local address {value!r} is unusable without a zone"
    return intern(str(ip)), "", ""
