"""The bundle's on-disk form: its files, their names and modes, bundle.json, and which of them hold a
secret (age-encrypted in a sealed bundle)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from ...plan import ClusterPlan
from ...serve import tls as seed_tls
from .. import certlist
from .. import crypto as pki
from .bundle import Bundle
from .specs import spec_index

BUNDLE_FORMAT = 1
ENCRYPTION_KEY_FILE = "encryption-key"
REPORT_KEY_FILE = "report-key"


def _base(specs: dict[str, dict[str, pki.CertSpec]], owner: str, name: str) -> str:
    spec = specs.get(owner, {}).get(name)
    return spec.base if spec is not None else name


def bundle_files(bundle: Bundle, plan: ClusterPlan) -> Iterator[tuple[str, bytes, int]]:
    """(relative path, bytes, mode) of every file of the bundle, in a stable order.

    Certificates are 0600 like everything else in the output tree: one rule, no list of exceptions.
    """
    specs = spec_index(plan)
    meta: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "cluster": plan.name,
        "created": bundle.created,
        "algorithm": bundle.algorithm.value,
        "leaves": {
            owner: {name: _base(specs, owner, name) for name in sorted(certs)}
            for owner, certs in sorted(bundle.leaves.items())
        },
    }
    if bundle.encryption_key is not None:
        meta["encryptionKey"] = ENCRYPTION_KEY_FILE
    if bundle.report_key is not None:
        meta["reportKey"] = REPORT_KEY_FILE
    if bundle.seed_ca is not None:
        meta["seedServer"] = True
    yield "bundle.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode(), 0o600
    yield "token", (bundle.token + "\n").encode(), 0o600
    if bundle.encryption_key is not None:
        yield ENCRYPTION_KEY_FILE, base64.b64encode(bundle.encryption_key) + b"\n", 0o600
    for name in certlist.CA_NAMES:
        base = certlist.ca_specs()[name].base
        yield f"pki/{base}.crt", bundle.cas[name].cert_pem, 0o600
        yield f"pki/{base}.key", bundle.cas[name].key_pem, 0o600
    yield "pki/sa.key", bundle.sa_key_pem, 0o600
    yield "pki/sa.pub", bundle.sa_pub_pem, 0o600
    if bundle.report_key is not None:
        yield REPORT_KEY_FILE, base64.b64encode(bundle.report_key) + b"\n", 0o600
    if bundle.seed_ca is not None and bundle.seed_server is not None:
        for base, pair in ((seed_tls.CA_BASE, bundle.seed_ca), (seed_tls.SERVER_BASE, bundle.seed_server)):
            yield f"pki/{base}.crt", pair.cert_pem, 0o600
            yield f"pki/{base}.key", pair.key_pem, 0o600
    for owner, certs in sorted(bundle.leaves.items()):
        for name, held in sorted(certs.items()):
            base = _base(specs, owner, name)
            yield f"nodes/{owner}/{base}.crt", held.cert_pem, 0o600
            yield f"nodes/{owner}/{base}.key", held.key_pem, 0o600


def secret_file(rel: str) -> bool:
    """A bundle file that holds a secret (a private key, the bootstrap token, the etcd encryption key):
    age-encrypted in a sealed bundle. Certificates, sa.pub and bundle.json stay clear."""
    return rel.endswith(".key") or rel in ("token", ENCRYPTION_KEY_FILE, REPORT_KEY_FILE)
