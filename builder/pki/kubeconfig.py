"""kubeconfig files as kubeadm writes them (CreateWithCerts / CreateWithToken), as data.

Apart from the crypto primitives (`builder.pki.crypto`): a kubeconfig only carries PEM bytes, and its
key order is clientcmd's, not a certificate's business.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography import x509

from .crypto import PrivateKey, cert_pem, key_pem


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def kubeconfig(
    *,
    cluster_name: str,
    server: str,
    ca_cert: x509.Certificate | bytes,
    user: str,
    client_cert: x509.Certificate | bytes | None = None,
    client_key: PrivateKey | bytes | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """kubeadm CreateWithCerts / CreateWithToken, keys in the order clientcmd writes them (sorted).

    Certificates and key may be given as objects or as their PEM bytes (used verbatim, no re-encoding).
    """
    if token is not None and (client_cert is not None or client_key is not None):
        raise ValueError("kubeconfig: give either a token or a client certificate and key, not both")
    if token is None and (client_cert is None or client_key is None):
        raise ValueError("kubeconfig: needs a client certificate and its key, or a token")
    context = f"{user}@{cluster_name}"
    ca_pem = ca_cert if isinstance(ca_cert, bytes) else cert_pem(ca_cert)
    auth: dict[str, str]
    if token is not None:
        auth = {"token": token}
    else:
        assert client_cert is not None and client_key is not None
        auth = {
            "client-certificate-data": _b64(
                client_cert if isinstance(client_cert, bytes) else cert_pem(client_cert)
            ),
            "client-key-data": _b64(client_key if isinstance(client_key, bytes) else key_pem(client_key)),
        }
    return {
        "apiVersion": "v1",
        "clusters": [
            {
                "cluster": {"certificate-authority-data": _b64(ca_pem), "server": server},
                "name": cluster_name,
            }
        ],
        "contexts": [{"context": {"cluster": cluster_name, "user": user}, "name": context}],
        "current-context": context,
        "kind": "Config",
        "preferences": {},
        "users": [{"name": user, "user": auth}],
    }
