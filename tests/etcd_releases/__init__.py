"""Upstream etcd at the release each supported Kubernetes minor runs, built from the Go module proxy.

`make k8s` builds the newest minor's etcd with the rest of Kubernetes (tests/k8s). The bake writes an
etcd command line that depends on the minor (etcd 3.5 keeps ``--experimental-*`` flags, 3.6 and later
take ``--feature-gates=InitialCorruptCheck=true``), so each minor's flag set is judged by the etcd
release kubeadm's image tag names for it (``builder.model.versions.TABLE[minor].etcd_tag``). One Go module per
release lives here (``v<release>/go.mod`` + ``go.sum``; the three-line main is tests/k8s/etcd/main.go),
outside tests/k8s so adding a release does not change the big build's cache key.

Output: ``${BAKE_K8S_CACHE:-/var/cache/bake-k8s}/etcd-releases/<release>-<key>/etcd``.
Run ``python -m tests.etcd_releases [RELEASE ...]`` to build (or reuse) them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from builder.model import versions
from tests.k8s import CACHE
from tests.k8s import build as k8s_build
from tests.k8s.build import HERE as K8S_HERE
from tests.k8s.build import BuildError, _go, _go_base_env, file_lock, go_version

HERE = Path(__file__).resolve().parent
MAIN_GO = K8S_HERE / "etcd" / "main.go"


def release_of(minor: int) -> str:
    """The etcd release in kubeadm's etcd image tag for ``minor`` ("3.5.15-0" -> "v3.5.15")."""
    return "v" + versions.TABLE[minor].etcd_tag.rsplit("-", 1)[0]


def releases() -> list[str]:
    """Every release with a module here, oldest first."""
    dirs = [p.name for p in HERE.glob("v*") if (p / "go.mod").exists()]
    return sorted(dirs, key=lambda r: tuple(int(x) for x in r[1:].split(".")))


def _key(release: str) -> str:
    h = hashlib.sha256()
    for path in (HERE / release / "go.mod", HERE / release / "go.sum", MAIN_GO):
        h.update(path.read_bytes() + b"\0")
    h.update(go_version().encode())
    return h.hexdigest()[:12]


def binary(release: str) -> Path:
    """Where ``release``'s etcd is (or will be) built: the k8s build's own etcd for the release it pins."""
    if not (HERE / release / "go.mod").exists() and release == k8s_build.module_requirements("etcd").get(
        "go.etcd.io/etcd/server/v3"
    ):
        return k8s_build.output_dir("amd64") / "bin" / "etcd"
    return CACHE / "etcd-releases" / f"{release}-{_key(release)}" / "etcd"


def build(release: str, *, log: bool = True) -> Path:
    """Build ``release``'s etcd unless the cache holds it; a module the proxy does not serve fails."""
    out = binary(release)
    if out.parent.name == "bin":  # built by `make k8s`
        return k8s_build.build("amd64", log=log).directory / "bin" / "etcd"
    if not (HERE / release / "go.mod").exists():
        raise BuildError(f"no module for etcd {release} in {HERE.name}/ (add v<release>/go.mod and go.sum)")
    with file_lock(out.parent.parent / f".{release}.lock"):
        if out.exists():
            return out
        started = time.monotonic()
        if log:
            print(f"[etcd] building etcd {release} ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            src = Path(tmp) / "src"
            shutil.copytree(HERE / release, src)
            shutil.copy2(MAIN_GO, src / "main.go")
            staged = Path(tmp) / "etcd"
            env = _go_base_env()
            env.update(GOOS="linux", CGO_ENABLED="0")
            _go(["build", "-trimpath", "-o", str(staged), "."], src, env)
            out.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, out)
        if log:
            print(f"[etcd] built etcd {release} in {time.monotonic() - started:.0f} s", file=sys.stderr)
        return out


def main(argv: Sequence[str] | None = None) -> int:
    wanted = list(argv if argv is not None else sys.argv[1:]) or releases()
    try:
        for release in wanted:
            print(f"{release}: {build(release)}")
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
