"""Go's (*x509.Certificate).VerifyHostname, rule for rule: whether a certificate covers a name or
address as kubeadm's reuse check (spec 1.7) decides it."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

from cryptography import x509

from .spec import IPAddress, canonical_ip


def _san_values(cert: x509.Certificate) -> tuple[list[str], list[IPAddress]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    ips = [ip for ip in san.get_values_for_type(x509.IPAddress) if isinstance(ip, IPv4Address | IPv6Address)]
    return san.get_values_for_type(x509.DNSName), ips


def verify_hostname(cert: x509.Certificate, host: str) -> bool:
    """Go's (*x509.Certificate).VerifyHostname: IPs by equality, names exact or left-most wildcard; no CN."""
    candidate_ip = host[1:-1] if len(host) >= 3 and host[0] == "[" and host[-1] == "]" else host
    dns_names, ips = _san_values(cert)
    ip = _parse_go_ip(candidate_ip)
    if ip is not None:
        ip = canonical_ip(ip)
        return any(canonical_ip(c) == ip for c in ips)
    name = _lower_ascii(host)
    valid_name = _valid_hostname(name, is_pattern=False)
    for match in dns_names:
        if valid_name and _valid_hostname(match, is_pattern=True):
            if _match_hostnames(match, name):
                return True
        elif _match_exactly(match, name):
            return True
    return False


def _parse_go_ip(text: str) -> IPAddress | None:
    """net.ParseIP: no IPv6 zones, no leading zeros in IPv4 parts."""
    if "%" in text:
        return None
    try:
        return ip_address(text)
    except ValueError:
        return None


def _lower_ascii(s: str) -> str:
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in s)


def _valid_hostname(host: str, *, is_pattern: bool) -> bool:
    if not is_pattern:
        host = host.removesuffix(".")
    if not host or host == "*":
        return False
    for i, part in enumerate(host.split(".")):
        if not part:
            return False
        if is_pattern and i == 0 and part == "*":
            continue
        for j, c in enumerate(part):
            if (
                ("a" <= c <= "z")
                or ("0" <= c <= "9")
                or ("A" <= c <= "Z")
                or c == "_"
                or (c == "-" and j != 0)
            ):
                continue
            return False
    return True


def _match_exactly(a: str, b: str) -> bool:
    if a in ("", ".") or b in ("", "."):
        return False
    return _lower_ascii(a) == _lower_ascii(b)


def _match_hostnames(pattern: str, host: str) -> bool:
    pattern = _lower_ascii(pattern)
    host = _lower_ascii(host.removesuffix("."))
    if not pattern or not host:
        return False
    p_parts, h_parts = pattern.split("."), host.split(".")
    if len(p_parts) != len(h_parts):
        return False
    return all((i == 0 and p == "*") or p == h for i, (p, h) in enumerate(zip(p_parts, h_parts, strict=True)))
