"""Value syntaxes of the profile: addresses, CIDRs, MACs, durations, names and endpoints.

Each is a pydantic `Annotated` type whose validator raises an error naming the value, so every bad
value is reported with its field path; `split_host_port` parses the controlPlaneEndpoint the same way.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator
from pydantic_core import PydanticCustomError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# `\Z`, not `$`: Python's `$` also matches before a final newline ("cp-1\n"), Go's does not.
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
DNS1123_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z"
)
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")
DURATION_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?\Z")
LINUX_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")


def _parse_ip(value: Any) -> IPAddress:
    if isinstance(value, IPAddress):
        return value
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
    try:
        if text is None or isinstance(value, int):
            raise ValueError
        address = ipaddress.ip_address(text)
    except ValueError:
        raise PydanticCustomError(
            "ip", "{value} is not an IPv4 or IPv6 address", {"value": repr(value)}
        ) from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        # Python parses `addr%zone`, but no config bake writes (URLs, kubeadm's advertise address,
        # haproxy, keepalived, netplan) can carry a zone: the interface is a field of its own.
        raise PydanticCustomError(
            "ip", "{value} has a zone index: give the address alone", {"value": repr(value)}
        )
    return address


def _parse_cidr(value: Any) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("cidr", "{value} is not a CIDR", {"value": repr(value)})
    for part in value.split(","):
        try:
            ipaddress.ip_network(part.strip(), strict=True)
        except ValueError as exc:
            raise PydanticCustomError(
                "cidr", "{value} is not a CIDR: {why}", {"value": repr(part), "why": str(exc)}
            ) from None
    return ",".join(p.strip() for p in value.split(","))


def _parse_mac(value: Any) -> str:
    if not isinstance(value, str) or not MAC_RE.match(value.lower()):
        raise PydanticCustomError(
            "mac", "{value} is not a MAC address like 52:54:00:12:34:56", {"value": repr(value)}
        )
    return value.lower()


def _parse_duration(value: Any) -> str:
    if isinstance(value, str):
        m = DURATION_RE.match(value)
        if m and any(m.groups()) and value:
            return value
    raise PydanticCustomError(
        "duration", "{value} is not a duration like 8760h or 24h0m0s", {"value": repr(value)}
    )


def _parse_name(value: Any) -> str:
    if not isinstance(value, str) or not DNS1123_LABEL.match(value):
        raise PydanticCustomError(
            "name",
            "{value} is not a valid name: lower-case letters, digits and '-', starting and ending "
            "with a letter or digit, at most 63 characters (RFC 1123)",
            {"value": repr(value)},
        )
    return value


_URL_UNSAFE = re.compile(r"[\s'\"`$\\;]")


def _parse_server_url(value: Any) -> str:
    """A URL a node calls at first boot (`cluster.seed.reportUrl`): http or https, a host that is an IP
    address or a DNS name, an optional port and path; no user, query or fragment (nothing a node could
    not carry in a shell-quoted env file and a curl argument)."""
    if not isinstance(value, str):
        raise PydanticCustomError("url", "{value} is not a URL", {"value": repr(value)})
    why = server_url_problem(value)
    if why:
        raise PydanticCustomError("url", "{value} {why}", {"value": repr(value), "why": why})
    return value


def server_url_problem(text: str) -> str:
    """What is wrong with `text` as a server URL, or "" (the validator's reason, also used by tests)."""
    from urllib.parse import urlsplit

    if _URL_UNSAFE.search(text):
        return "holds a space, a quote, '$', '\\' or ';'"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        return f"is not a URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "is not an http:// or https:// URL (e.g. http://10.77.0.1:8080)"
    if parts.username is not None or parts.password is not None:
        return "names a user: nodes authenticate by their signature, never by the URL"
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        return "has a query or a fragment"
    host = parts.hostname or ""
    if not host:
        return "names no host"
    if port == 0:
        return "has port 0"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not DNS1123_SUBDOMAIN.match(host):
            return f"host {host!r} is neither an IP address nor a DNS name"
    return ""


IP = Annotated[IPAddress, PlainValidator(_parse_ip), PlainSerializer(str)]
CIDR = Annotated[str, PlainValidator(_parse_cidr)]
MAC = Annotated[str, PlainValidator(_parse_mac)]
Duration = Annotated[str, PlainValidator(_parse_duration)]
Name = Annotated[str, PlainValidator(_parse_name)]
ServerUrl = Annotated[str, PlainValidator(_parse_server_url)]


def duration_seconds(text: str) -> int:
    """Go-style duration ("8760h", "24h0m0s") to seconds; the text was validated by `Duration`."""
    m = DURATION_RE.match(text)
    assert m is not None
    h, mi, s = (int(g) if g else 0 for g in m.groups())
    return h * 3600 + mi * 60 + s


def split_host_port(endpoint: str, default_port: int) -> tuple[str, int]:
    """Split `host[:port]` / `[v6]:port` / bare IPv6 the way kubeadm's endpoint parsing accepts."""
    if endpoint.startswith("["):
        host, _, rest = endpoint[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"cannot parse {endpoint!r}")
        port_text = rest[1:]
    elif endpoint.count(":") > 1:
        host, port_text = endpoint, ""
    else:
        host, _, port_text = endpoint.partition(":")
    port = default_port
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"port {port_text!r} is not 1-65535")
        port = int(port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not DNS1123_SUBDOMAIN.match(host):
            raise ValueError(f"host {host!r} is neither an IP address nor a DNS name") from None
    return host, port
