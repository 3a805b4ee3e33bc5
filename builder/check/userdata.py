"""A user-data read as it lands on the node's disk: write_files decoded, the first-boot archive and the
key pack unpacked, so that no scan misses a key or token hidden in an encoding."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from pathlib import Path
from typing import Any

import yaml

from .. import yamlio
from ..node import archive, compact_keys, keypack

PRIVATE_KEY_MARKER = b"PRIVATE KEY-----"
DEFAULT_OWNER = "root:root"
"""The owner cloud-init gives a write_files entry that names none (or an empty one)."""


_B64 = frozenset({"b64", "base64"})
_GZ_B64 = frozenset({"gz+b64", "gz+base64", "gzip+b64", "gzip+base64"})
_GZ = frozenset({"gz", "gzip"})


def decoded_content(raw: object, encoding: object) -> bytes:
    """A write_files entry's content as cloud-init writes it to disk (its encodings: b64, gz, gz+b64 and
    their spellings; anything else is text). The bake writes b64 and, for the archive, gz+b64. Content
    that is neither text nor YAML's !!binary (a number, `content:` left empty) is unreadable: cloud-init
    fails on it and writes neither that file nor the entries after it."""
    if isinstance(raw, str):
        data = raw.encode()
    elif isinstance(raw, bytes):
        data = raw
    else:
        raise ValueError(f"a write_files content is {type(raw).__name__}, neither text nor !!binary")
    if encoding in _B64 | _GZ_B64:
        data = base64.b64decode(data)
    if encoding in _GZ_B64 | _GZ:
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            raise ValueError(f"{encoding} content does not decompress: {exc}") from None
    return data


def write_files_of(user_data: bytes) -> dict[str, tuple[bytes, str, str]]:
    """path -> (decoded content, permissions, owner) of what a user-data's write_files puts on the
    node's disk: the shared first-boot archive (builder.node.archive) and the key pack
    (builder.node.keypack) stand for the files they unpack to, read with the node's own code; a path
    written twice is unreadable (ValueError)."""
    return files_of(yamlio.load_own(user_data))


def files_of(doc: Any) -> dict[str, tuple[bytes, str, str]]:
    """write_files_of on an already parsed user-data (the seed check parses it once for several checks)."""
    out: dict[str, tuple[bytes, str, str]] = {}
    unpacked: dict[str, tuple[bytes, str, str]] = {}
    pack: Any = None
    for entry in (doc or {}).get("write_files", []) or []:
        content = decoded_content(entry.get("content", ""), entry.get("encoding"))
        if entry["path"] == archive.ARCHIVE_PATH:
            unpacked = archive.members(content)
            continue
        if entry["path"] == compact_keys.PACK_PATH:
            pack = _key_pack(content, str(entry.get("permissions", "")))
            continue
        out[entry["path"]] = (
            content,
            str(entry.get("permissions", "")),
            str(entry.get("owner") or DEFAULT_OWNER),
        )
    for path, member in unpacked.items():
        if path in out:
            raise ValueError(f"{path}: both in write_files and in {archive.ARCHIVE_PATH}")
        out[path] = member
    if pack is not None:
        try:
            unpacked_keys = keypack.unpack(pack, lambda p: out[p][0] if p in out else None)
        except (LookupError, TypeError, AttributeError) as exc:  # a pack edited by hand
            raise ValueError(f"{compact_keys.PACK_PATH}: unreadable: {exc!r}") from None
        for path, content, permissions, owner in unpacked_keys:
            if path in out:
                raise ValueError(f"{path}: both in write_files and in {compact_keys.PACK_PATH}")
            out[path] = (content, permissions, owner)
    return out


def _key_pack(content: bytes, permissions: str) -> Any:
    """The key pack's JSON; it holds private keys (as primes), so it is written 0600 or is refused."""
    if not permissions or int(permissions, 8) & 0o077:
        raise ValueError(
            f"{compact_keys.PACK_PATH}: holds private keys, written with permissions {permissions!r}"
        )
    try:
        return json.loads(content)
    except ValueError as exc:
        raise ValueError(f"{compact_keys.PACK_PATH}: not JSON: {exc}") from None


def looks_secret(data: bytes) -> bool:
    """What makes a file secret-bearing for the mode check: a private key, or anything naming a token."""
    return PRIVATE_KEY_MARKER in data or b"token" in data.lower()


def readable_forms(path: Path) -> list[bytes]:
    """A file's bytes and, for a seed's user-data (raw or gzip), the files it writes, decoded: a gz+b64
    entry or the archive would hide a token or key from a scan of the raw bytes."""
    data = path.read_bytes()
    forms = [data]
    if path.name in ("user-data", "user-data.gz"):
        try:
            text = gzip.decompress(data) if path.name.endswith(".gz") else data
            forms += [text, *(c for c, _, _ in write_files_of(text).values())]
        except (OSError, EOFError, zlib.error, yaml.YAMLError, LookupError, TypeError, ValueError):
            pass  # unreadable: the user-data checks say so
    return forms
