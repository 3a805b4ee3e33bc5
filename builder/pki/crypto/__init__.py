"""PKI primitives that reproduce what kubeadm (Go crypto/x509) writes, byte layout included.

Pure: no file I/O. Everything a kubeadm-compatible bundle needs is here (keys, CA and leaf
certificates, PEM encodings, discovery hash, bootstrap tokens); *which* certificates exist and what goes
in them lives in `builder.pki.certlist`, kubeconfigs in `builder.pki.kubeconfig`.

This package: `keys` (the key algorithms; making, encoding and loading keys), `spec` (a certificate as
kubeadm computes it), `certs` (certificates built and signed as Go builds them, their encoding, the
discovery hash), `tokens` (bootstrap tokens), `reuse` (kubeadm's check of an existing certificate) and
`hostname` (Go's VerifyHostname, which that check uses). Here, the primitives by one name, as the rest of
bake reads them (`from builder.pki import crypto as pki`).
"""

from __future__ import annotations

from .certs import CERTIFICATE_BACKDATE, cert_pem, discovery_hash, load_cert, new_ca, sign
from .hostname import verify_hostname
from .keys import KeyAlgorithm, PrivateKey, PublicKey, generate_keys, key_pem, load_key, public_pem
from .reuse import is_ca, signature_problem, verify_reuse
from .spec import CertSpec, ExtUsage, IPAddress
from .tokens import TOKEN_RE, generate_token

__all__ = [
    "CERTIFICATE_BACKDATE",
    "TOKEN_RE",
    "CertSpec",
    "ExtUsage",
    "IPAddress",
    "KeyAlgorithm",
    "PrivateKey",
    "PublicKey",
    "cert_pem",
    "discovery_hash",
    "generate_keys",
    "generate_token",
    "is_ca",
    "key_pem",
    "load_cert",
    "load_key",
    "new_ca",
    "public_pem",
    "sign",
    "signature_problem",
    "verify_hostname",
    "verify_reuse",
]
