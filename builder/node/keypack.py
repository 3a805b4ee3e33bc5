#!/usr/bin/python3
"""keypack.py [--root DIR] PACK: a node's RSA keys rebuilt from their primes, and the kubeconfigs holding
them (builder/node/compact_keys.py has the format). Standard library, Python 3.8: cloud-init's python3."""

from __future__ import annotations

import base64
import grp
import json
import math
import os
import pwd
import sys
from collections.abc import Callable
from typing import Any

FORMAT = "bake-keypack/1"
RSA_LABEL = "RSA PRIVATE KEY"
MODE, OWNER = "0600", "root:root"  # a file's, unless its entry says otherwise
RSA_KEY_ALGORITHM = bytes.fromhex("06092a864886f70d0101010500")  # rsaEncryption, NULL parameters


def der(tag: int, body: bytes) -> bytes:
    n = len(body)
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + (bytes([n]) if n < 0x80 else bytes([0x80 | len(size)]) + size) + body


def pem(label: str, data: bytes) -> bytes:
    text = base64.b64encode(data).decode()
    lines = "\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n".encode()


def rsa_der(p: int, q: int, e: int, modulus: str) -> bytes:
    """PKCS#1, two primes; d inverted modulo lcm(p-1, q-1) (OpenSSL 3, Go) or (p-1)(q-1) (older)."""
    d = pow(e, -1, (p - 1) * (q - 1) // {"lcm": math.gcd(p - 1, q - 1), "phi": 1}[modulus])
    ints = (0, p * q, e, d, p, q, d % (p - 1), d % (q - 1), pow(q, -1, p))
    return der(0x30, b"".join(der(2, n.to_bytes(n.bit_length() // 8 + 1, "big")) for n in ints))


def _item(data: bytes, i: int) -> tuple[int, int]:
    """Where the content of the DER item at i starts and ends."""
    n, i = data[i + 1], i + 2
    if n & 0x80:
        n, i = int.from_bytes(data[i : i + (n & 0x7F)], "big"), i + (n & 0x7F)
    return i, i + n


def modulus(data: bytes) -> int:
    """n of the RSA key in a certificate or public key: DER, PEM, or base64 of PEM (a kubeconfig's)."""
    if data.startswith(b"LS0t"):
        data = base64.b64decode(data)
    if data.startswith(b"-----"):
        data = base64.b64decode(b"".join(data.split(b"\n")[1:-2]))
    i = data.index(RSA_KEY_ALGORITHM) + len(RSA_KEY_ALGORITHM)  # then BIT STRING {SEQUENCE {n, e}}
    i = _item(data, _item(data, i)[0] + 1)[0]
    start, end = _item(data, i)
    return int.from_bytes(data[start:end], "big")


def part_bytes(part: Any, written: Callable[[str], bytes | None], made: list[bytes]) -> bytes:
    """`written(path)`: a file written before; `made`: the bytes of this file's parts before this one."""
    if isinstance(part, str):
        return part.encode()
    ((kind, value),) = part.items()
    if kind == "rsa":  # [p, q or a part holding the public key, e, modulus kind]
        p = int.from_bytes(base64.b64decode(value[0], validate=True), "big")
        if isinstance(value[1], str):
            q = int.from_bytes(base64.b64decode(value[1], validate=True), "big")
        else:
            n = modulus(part_bytes(value[1], written, made))
            q = n // p
            if p * q != n:
                raise ValueError("a prime that does not divide its public key")
        return pem(RSA_LABEL, rsa_der(p, q, value[2], value[3]))
    if kind == "pem":
        return pem(value[0], base64.b64decode(value[1], validate=True))
    if kind == "base64":
        return base64.b64encode(b"".join(part_bytes(p, written, made) for p in value))
    if kind == "part":
        return made[int(value)]
    found = written(value) if kind == "file" else None
    if found is None:
        raise ValueError(f"{kind} {value!r:.40}: not a part, or not on the node")
    return found


def unpack(pack: Any, earlier: Callable[[str], bytes | None]) -> list[tuple[str, bytes, str, str]]:
    """(path, content, permissions, owner) of each file; `earlier(path)` reads what was written before."""
    if pack.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} pack")
    done: dict[str, bytes] = {}
    out = []
    for f in pack["files"]:
        path = f["path"]
        if not path.startswith("/") or "/../" in path:
            raise ValueError(f"not an absolute path: {path!r}")
        made: list[bytes] = []
        for p in f["content"]:
            made.append(part_bytes(p, lambda x: done[x] if x in done else earlier(x), made))
        done[path] = b"".join(made)
        out.append((path, done[path], f.get("permissions", MODE), f.get("owner", OWNER)))
    return out


def write_file(path: str, content: bytes, permissions: str, owner: str) -> None:
    """Owner and mode first, renamed into place: never readable by others, never seen half written."""
    user, group = owner.split(":")
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    fd = os.open(f"{path}.new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchown(fd, pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)
        os.fchmod(fd, int(permissions, 8))
        if os.write(fd, content) != len(content):
            raise OSError(f"{path}: short write")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(f"{path}.new", path)


def main(args: list[str]) -> int:
    root = "/"
    if args[:1] == ["--root"] and len(args) > 1:
        root, args = args[1], args[2:]

    def at(path: str) -> str:
        return os.path.join(root, path.lstrip("/"))

    def on_disk(path: str) -> bytes | None:
        try:
            with open(at(path), "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    if len(args) != 1:
        print("usage: keypack.py [--root DIR] PACK", file=sys.stderr)
        return 2
    try:
        with open(args[0], "rb") as fh:
            files = unpack(json.load(fh), on_disk)
        # Only what is missing: the unit runs this at every boot until the bootstrap is done, and kubeadm
        # may have changed a file since (kubelet.conf, pointed at the kubelet's rotated certificate).
        missing = [f for f in files if not os.path.lexists(at(f[0]))]
        for path, content, permissions, owner in missing:
            write_file(at(path), content, permissions, owner)
    except (OSError, ValueError, LookupError, TypeError, AttributeError) as exc:
        print(f"keypack: {args[0]}: {exc}", file=sys.stderr)
        return 1
    print(f"keypack: wrote {len(missing)} of {len(files)} files from {args[0]} (the others were there)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
