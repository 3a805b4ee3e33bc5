"""Upstream Kubernetes components built from the Go module proxy for the real-kubeadm tests.

Only ``go.mod`` / ``go.sum`` and the build tooling live here; binaries go to a cache outside the clone
(``${BAKE_K8S_CACHE:-/var/cache/bake-k8s}``), built by ``make k8s``.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE = Path(os.environ.get("BAKE_K8S_CACHE", "/var/cache/bake-k8s"))


def locate(arch: str = "amd64") -> Path | None:
    """The directory holding the built binaries for ``arch``, or None when they are not built.

    ``BAKE_K8S_BIN`` names a directory directly (for a build made elsewhere).
    """
    explicit = os.environ.get("BAKE_K8S_BIN")
    if explicit:
        path = Path(explicit)
        return path if path.is_dir() else None
    from . import build  # the cache key depends on go.sum and the Go version

    path = build.output_dir(arch) / "bin"
    return path if (path / "kubeadm").exists() else None
