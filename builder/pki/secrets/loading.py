"""A bundle read back from disk and fully checked: every inconsistency is reported at once (SecretsError),
never repaired."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509

from ...errors import Problem, SecretsError
from ...serve import tls as seed_tls
from .. import certlist, encryption, sealing
from .. import crypto as pki
from .bundle import Bundle, Issued
from .layout import BUNDLE_FORMAT, ENCRYPTION_KEY_FILE, REPORT_KEY_FILE

ReadFile = Callable[[Path], bytes]


def _read(path: Path, problems: list[Problem], where: str, read: ReadFile = Path.read_bytes) -> bytes | None:
    try:
        return read(path)
    except FileNotFoundError:
        problems.append(Problem(where, "missing"))
    except OSError as exc:
        problems.append(Problem(where, f"unreadable: {exc.strerror}"))
    return None


def _load_pair(
    root: Path, base: str, problems: list[Problem], label: str, read: ReadFile = Path.read_bytes
) -> Issued | None:
    where = f"{label}/{base}"
    cert_pem = _read(root / f"{base}.crt", problems, f"{where}.crt", read)
    key_pem = _read(root / f"{base}.key", problems, f"{where}.key", read)
    if cert_pem is None or key_pem is None:
        return None
    try:
        cert = pki.load_cert(cert_pem)
    except ValueError as exc:
        problems.append(Problem(f"{where}.crt", str(exc)))
        return None
    try:
        key = pki.load_key(key_pem)
    except ValueError as exc:
        problems.append(Problem(f"{where}.key", str(exc)))
        return None
    if key.public_key() != cert.public_key():
        problems.append(Problem(where, "the key does not belong to the certificate"))
        return None
    return Issued(cert, key, cert_pem, key_pem)


def load_bundle(root: Path, read: sealing.Reader | None = None) -> Bundle | None:
    """Read and fully check a bundle; None if there is none; SecretsError listing every inconsistency.

    `read` opens the files (age files decrypted in memory); by default with the identity and passphrase
    named by the environment (sealing.Keys.from_env), never asking on a terminal."""
    if not root.exists():
        return None
    read = read or sealing.Reader(root, sealing.Keys.from_env(prompt=False))
    problems: list[Problem] = []
    raw = _read(root / "bundle.json", problems, "secrets/bundle.json", read)
    meta: dict[str, Any] = {}
    if raw is not None:
        try:
            meta = json.loads(raw)
            if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
                raise ValueError(f"unknown format {meta.get('format') if isinstance(meta, dict) else meta!r}")
            algorithm = pki.KeyAlgorithm(meta["algorithm"])
            created = int(meta["created"])
            leaf_index = {
                str(owner): {str(name): str(base) for name, base in dict(certs).items()}
                for owner, certs in dict(meta["leaves"]).items()
            }
            has_key = meta.get("encryptionKey") == ENCRYPTION_KEY_FILE
            has_report_key = meta.get("reportKey") == REPORT_KEY_FILE
            has_seed_server = meta.get("seedServer") is True
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(Problem("secrets/bundle.json", f"corrupt: {exc}"))
    if problems:
        raise SecretsError(_with_hint(problems))
    token_raw = _read(root / "token", problems, "secrets/token", read)
    token = token_raw.decode(errors="replace").strip() if token_raw is not None else ""
    if token_raw is not None and not pki.TOKEN_RE.match(token):
        problems.append(Problem("secrets/token", "not a bootstrap token ([a-z0-9]{6}.[a-z0-9]{16})"))
    encryption_key = _load_secret_key(root, ENCRYPTION_KEY_FILE, problems, read) if has_key else None
    report_key = _load_secret_key(root, REPORT_KEY_FILE, problems, read) if has_report_key else None
    seed_ca, seed_server = (None, None)
    if has_seed_server:
        seed_ca, seed_server = _load_seed_server(root, algorithm, problems, read)
    cas: dict[str, Issued] = {}
    for name in certlist.CA_NAMES:
        pair = _load_pair(root / "pki", certlist.ca_specs()[name].base, problems, "secrets/pki", read)
        if pair is None:
            continue
        if not pki.is_ca(pair.cert):
            problems.append(Problem(f"secrets/pki/{certlist.ca_specs()[name].base}.crt", "is not a CA"))
        if not algorithm.matches(pair.key):
            problems.append(
                Problem(f"secrets/pki/{certlist.ca_specs()[name].base}.key", f"is not {algorithm.value}")
            )
        cas[name] = pair
    sa_key = _read(root / "pki/sa.key", problems, "secrets/pki/sa.key", read)
    sa_pub = _read(root / "pki/sa.pub", problems, "secrets/pki/sa.pub", read)
    if sa_key is not None and sa_pub is not None:
        try:
            if pki.public_pem(pki.load_key(sa_key)) != sa_pub:
                problems.append(Problem("secrets/pki/sa.pub", "does not match sa.key"))
        except ValueError as exc:
            problems.append(Problem("secrets/pki/sa.key", str(exc)))
    leaves: dict[str, dict[str, Issued]] = {}
    ca_by_subject = {pair.cert.subject: name for name, pair in cas.items()}
    for owner, names in sorted(leaf_index.items()):
        for name, base in sorted(names.items()):
            if (
                ".." in Path(owner).parts
                or ".." in Path(base).parts
                or owner.startswith("/")
                or base.startswith("/")
            ):
                problems.append(Problem("secrets/bundle.json", f"bad leaf path {owner}/{base}"))
                continue
            pair = _load_pair(root / "nodes" / owner, base, problems, f"secrets/nodes/{owner}", read)
            if pair is None:
                continue
            issuer = ca_by_subject.get(pair.cert.issuer)
            if issuer is None or not _signed_by(pair.cert, cas[issuer].cert):
                problems.append(
                    Problem(f"secrets/nodes/{owner}/{base}.crt", "not signed by any CA of the bundle")
                )
                continue
            leaves.setdefault(owner, {})[name] = pair
    if problems:
        raise SecretsError(_with_hint(problems))
    assert sa_key is not None and sa_pub is not None
    return Bundle(
        created, algorithm, token, cas, sa_key, sa_pub, leaves,
        encryption_key, report_key, seed_ca, seed_server,
    )  # fmt: skip


def _load_seed_server(
    root: Path, algorithm: pki.KeyAlgorithm, problems: list[Problem], read: ReadFile
) -> tuple[Issued | None, Issued | None]:
    ca = _load_pair(root / "pki", seed_tls.CA_BASE, problems, "secrets/pki", read)
    server = _load_pair(root / "pki", seed_tls.SERVER_BASE, problems, "secrets/pki", read)
    if ca is None or server is None:
        return None, None
    where = f"secrets/pki/{seed_tls.CA_BASE}"
    if not pki.is_ca(ca.cert):
        problems.append(Problem(f"{where}.crt", "is not a CA"))
    if not algorithm.matches(ca.key) or not algorithm.matches(server.key):
        problems.append(Problem(where, f"the seed server keys are not {algorithm.value}"))
    if not _signed_by(server.cert, ca.cert):
        problems.append(Problem(f"secrets/pki/{seed_tls.SERVER_BASE}.crt", "not signed by the seed CA"))
    return ca, server


def _load_secret_key(root: Path, name: str, problems: list[Problem], read: ReadFile) -> bytes | None:
    """A 32-byte secret kept base64 in one file (the etcd encryption key, the report key)."""
    where = f"secrets/{name}"
    raw = _read(root / name, problems, where, read)
    if raw is None:
        return None
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != encryption.KEY_BYTES:
        problems.append(Problem(where, f"not {encryption.KEY_BYTES} bytes in base64"))
        return None
    return key


def _with_hint(problems: list[Problem]) -> list[Problem]:
    return [
        *problems,
        Problem(
            "secrets",
            "the bundle is inconsistent and was not changed; restore it from a backup, remove the "
            "offending node directory under secrets/nodes/ to re-issue that node, "
            "or --rotate-ca to start over",
        ),
    ]


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    return pki.signature_problem(cert, ca) is None
