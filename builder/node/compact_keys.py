"""A node's RSA keys and the kubeconfigs that embed them, shipped in its key pack (builder.node.keypack)
instead of as PEM: an RSA-2048 control plane's user-data goes from about 94,000 bytes to under 65,535.

Only secret files of kubeadm's tree (/etc/kubernetes) go in, and only those whose bytes keypack.unpack
gives back exactly: an RSA key in PKCS#1 PEM, and a kubeconfig whose base64 data fields hold PEM (a
certificate, an RSA key, or a file the node is shipped beside it, such as pki/ca.crt). Everything else,
certificates and ECDSA keys among them, stays a write_files entry. The prep phase's unit unpacks the
pack first (an ExecStartPre= in a drop-in of the nodes that have one: the shared scripts stay the same
bytes on every node), the missing files only, at each boot until the bootstrap is done; a failure fails
the phase, which the bootstrap retries and reports. The logical file set is unchanged: `bake check` and
the tests read seeds through keypack.unpack (builder.check.userdata.files_of).

The pack is JSON, a file a line: {"format": FORMAT, "files": [{"path", "permissions" (if not 0600),
"owner" (if not root:root), "content": [part, ...]}, ...]}, a file's bytes being its parts' one after
the other. A part is
  "text"                     UTF-8
  {"rsa": [p, q, e, kind]}   the PKCS#1 PEM of the key of primes p and q (base64, big-endian), its
                             private exponent inverted modulo lcm(p-1, q-1) (kind "lcm") or (p-1)(q-1)
                             ("phi"); q may be a part holding the public key instead (a certificate or
                             public key, DER, PEM or base64 of PEM): q is its modulus divided by p
  {"pem": [label, der]}      a PEM block around the DER (base64)
  {"base64": [part, ...]}    the parts' bytes in base64, one line
  {"file": path}             the bytes of a file written before the pack (never one in it)
  {"part": i}                the bytes of this file's part i, made before this one
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .. import paths
from ..files import NodeFile, public, secret
from . import keypack
from .bootstrap.layout import LIB_DIR
from .bootstrap.units import phase_unit_path

PACK_PATH = paths.KEY_PACK
SCRIPT_PATH = f"{LIB_DIR}/keypack.py"
"""The unpacker on the node: builder/node/keypack.py as it is, in the first-boot archive."""
DROPIN_PATH = f"{phase_unit_path('prep')}.d/10-keypack.conf"
DROPIN_TEXT = f"""\
# bake: the node's RSA keys and the kubeconfigs holding them, rebuilt from {PACK_PATH} before the phase
[Service]
ExecStartPre=/usr/bin/python3 {SCRIPT_PATH} {PACK_PATH}
"""

_RSA_MARKS = (b"-----BEGIN RSA PRIVATE KEY-----", base64.b64encode(b"-----BEGIN RSA PRIVATE KEY-----")[:40])
"""An RSA key in PEM, or at the start of a kubeconfig's base64 field: a thousand workers' files are
passed over by these alone."""
_PEM = re.compile(rb"\A-----BEGIN ([A-Z0-9 ]+)-----\n([A-Za-z0-9+/=\n]+)\n-----END \1-----\n\Z")
_DATA_FIELD = re.compile(r"(?m)^( *[a-z-]+-data: )([A-Za-z0-9+/]+={0,2})$")
"""A kubeconfig's certificate-authority-data, client-certificate-data and client-key-data lines."""


@cache
def unpacker_files() -> tuple[NodeFile, NodeFile]:
    """What a node with a key pack gets beside it: the program and the prep unit's drop-in."""
    return NodeFile(SCRIPT_PATH, Path(keypack.__file__).read_bytes(), 0o755), public(DROPIN_PATH, DROPIN_TEXT)


def _b64(n: int) -> str:
    return base64.b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).decode("ascii")


def _pem_part(data: bytes, public: Callable[[int], Any]) -> dict[str, Any] | None:
    """The part that rebuilds one PEM block: an RSA key by its primes, or by its first prime and
    `public(n)`, a part holding its public key (None: there is none), anything else by its DER."""
    m = _PEM.match(data)
    if m is None:
        return None
    label = m.group(1).decode("ascii")
    try:
        der = base64.b64decode(m.group(2).replace(b"\n", b""), validate=True)
    except binascii.Error:
        return None
    if label != keypack.RSA_LABEL:
        return {"pem": [label, base64.b64encode(der).decode("ascii")]}
    try:
        key = serialization.load_der_private_key(der, None, unsafe_skip_rsa_key_validation=True)
    except ValueError:
        return None
    if not isinstance(key, rsa.RSAPrivateKey):
        return None
    n = key.private_numbers()
    for modulus in ("lcm", "phi"):  # the round trip proves it: a key of more primes never matches
        if keypack.rsa_der(n.p, n.q, n.public_numbers.e, modulus) == der:
            beside = public(n.public_numbers.n)
            return {"rsa": [_b64(n.p), beside or _b64(n.q), n.public_numbers.e, modulus]}
    return None


def _public_keys(beside: dict[str, bytes]) -> dict[int, str]:
    """RSA modulus -> the first public file holding it (a certificate, sa.pub), read as the node reads it."""
    found: dict[int, str] = {}
    for path, content in beside.items():
        if content.startswith(b"-----BEGIN "):
            try:
                found.setdefault(keypack.modulus(content), path)
            except (ValueError, IndexError):
                continue
    return found


def _kubeconfig_parts(
    text: str, files: Callable[[int], Any], by_content: dict[bytes, str]
) -> list[Any] | None:
    """A kubeconfig with each base64 PEM field rebuilt from a part; None if it embeds no RSA key. Its key's
    public half is its client certificate, a part before it."""
    parts: list[Any] = []
    at, has_rsa = 0, False
    certificates: dict[int, int] = {}  # modulus -> index of the part holding it

    def public(n: int) -> Any:
        return {"part": certificates[n]} if n in certificates else files(n)

    for m in _DATA_FIELD.finditer(text):
        data = base64.b64decode(m.group(2))
        part = {"file": by_content[data]} if data in by_content else _pem_part(data, public)
        if part is None:
            continue
        if "pem" in part and part["pem"][0] == "CERTIFICATE":
            with contextlib.suppress(ValueError, IndexError):
                certificates[keypack.modulus(data)] = len(parts) + 1
        has_rsa = has_rsa or "rsa" in part
        parts += [text[at : m.start(2)], {"base64": [part]}]
        at = m.end(2)
    return [*parts, text[at:]] if has_rsa else None


def _candidate(f: NodeFile) -> bool:
    """A secret of kubeadm's tree with an RSA key: nothing of the first boot reads those before the prep
    phase (the reporter's and the join credential's files are under /etc/bake)."""
    kubeadms = f.path.startswith(f"{paths.KUBERNETES_DIR}/")
    return f.secret and kubeadms and any(mark in f.content for mark in _RSA_MARKS)


def _parts(f: NodeFile, files: Callable[[int], Any], by_content: dict[bytes, str]) -> list[Any] | None:
    if not _candidate(f):
        return None
    part = _pem_part(f.content, files)
    if part is not None:
        return [part] if "rsa" in part else None
    try:
        text = f.content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return _kubeconfig_parts(text, files, by_content)


def packable(files: Sequence[NodeFile]) -> bool:
    """Whether a node ships a key pack, and so the unpacker and the drop-in that runs it."""
    return any(_candidate(f) for f in files) and pack(files)[0] is not None


def pack(files: Sequence[NodeFile]) -> tuple[NodeFile | None, list[NodeFile]]:
    """(the key pack, the files left as write_files entries). A file goes in only when the pack gives
    back its exact bytes, path, mode and owner; the pack itself is secret (0600)."""
    beside = {f.path: f.content for f in files if not _candidate(f)}  # never in the pack: on disk first
    by_content = {content: path for path, content in beside.items()}
    moduli: dict[int, str] | None = None

    def public(n: int) -> Any:
        nonlocal moduli
        moduli = _public_keys(beside) if moduli is None else moduli
        return {"file": moduli[n]} if n in moduli else None

    entries: list[dict[str, Any]] = []
    rest: list[NodeFile] = []
    for f in files:
        parts = _parts(f, public, by_content)
        entry: dict[str, Any] = {"path": f.path}
        entry |= {"permissions": f.mode_text} if f.mode_text != keypack.MODE else {}
        entry |= {"owner": f.owner} if f.owner != keypack.OWNER else {}
        entry["content"] = parts
        if parts is None or keypack.unpack({"format": keypack.FORMAT, "files": [entry]}, beside.get) != [
            (f.path, f.content, f.mode_text, f.owner)
        ]:
            rest.append(f)
            continue
        entries.append(entry)
    if not entries:
        return None, list(files)
    return secret(PACK_PATH, pack_text(entries).encode()), rest


def pack_text(entries: list[dict[str, Any]]) -> str:
    """One file a line: in user-data the pack is a literal block, readable file by file."""
    lines = ",\n".join(json.dumps(e, separators=(",", ":")) for e in entries)
    return f'{{"format":"{keypack.FORMAT}","files":[\n{lines}\n]}}\n'
