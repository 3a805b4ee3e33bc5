"""Kubernetes Secrets encrypted at rest in etcd, from the cluster's first boot.

Turning encryption on after the fact leaves every existing Secret in clear until each one is
rewritten; a baked cluster has it from its first write instead. The bake keeps one 32-byte key in the
secrets bundle (reused byte for byte, kept across --rotate-ca: a new key would make the stored
Secrets unreadable), writes an EncryptionConfiguration to every control plane and points the
kube-apiserver at it through the ClusterConfiguration (kubeadm's extraArgs + extraVolumes; a joining
control plane gets the same flags from the uploaded ClusterConfiguration and the file from its seed).
"""

from __future__ import annotations

import base64
import os
from typing import Any, Literal

from .. import paths, yamlio

Provider = Literal["secretbox", "aescbc", "none"]
KEY_BYTES = 32  # secretbox needs exactly 32; aescbc accepts 16, 24 or 32
KEY_NAME = "bake-1"
CONFIG_DIR = paths.ENCRYPTION_DIR
CONFIG_PATH = f"{CONFIG_DIR}/config.yaml"
VOLUME = "encryption-config"
FLAG = "encryption-provider-config"


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def config_document(provider: Provider, key: bytes) -> dict[str, Any]:
    """The EncryptionConfiguration: Secrets written with `provider`; `identity` last, so a Secret
    stored in clear (none exist on a baked cluster's first boot) still reads."""
    assert provider != "none"
    return {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [
            {
                "resources": ["secrets"],
                "providers": [
                    {provider: {"keys": [{"name": KEY_NAME, "secret": base64.b64encode(key).decode()}]}},
                    {"identity": {}},
                ],
            }
        ],
    }


def config_bytes(provider: Provider, key: bytes) -> bytes:
    return yamlio.dump(config_document(provider, key)).encode()


def apiserver_settings(provider: Provider) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """(extraArgs, extraVolumes) of kubeadm's apiServer for this choice; nothing for `none`."""
    if provider == "none":
        return [], []
    return (
        [{"name": FLAG, "value": CONFIG_PATH}],
        [
            {
                "name": VOLUME,
                "hostPath": CONFIG_DIR,
                "mountPath": CONFIG_DIR,
                "readOnly": True,
                "pathType": "DirectoryOrCreate",
            }
        ],
    )
