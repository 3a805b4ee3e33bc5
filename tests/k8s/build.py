"""Build the upstream Kubernetes components from the Go module proxy into a cache outside the clone.

Each upstream project is its own Go module under ``tests/k8s/<project>/`` (go.mod + go.sum, nothing
from upstream committed) so their dependency graphs stay apart. The output goes to
``${BAKE_K8S_CACHE:-/var/cache/bake-k8s}/<key>/<arch>/bin/``, where the key hashes every go.mod/go.sum
here, ``go version``, the architecture and this file (the recipe); a present output is reused.
Versions are read from the go.mod files, so they are stated once. A module the proxy does not serve
fails the build: nothing is ever faked.

Run ``python -m tests.k8s.build [--arch amd64|arm64] [--json] [--no-images]``.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from . import CACHE

HERE = Path(__file__).resolve().parent
ARCHES = ("amd64", "arm64")
GNU_TRIPLET = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
GOCACHE_DIR = "gocache"  # one Go build cache shared by every key, arch and clone
BUILD_DATE = "2026-01-01T00:00:00Z"  # fixed so the binaries do not depend on the day they were built
K8S = "k8s.io/kubernetes"
K8S_VERSION_LDFLAGS = (
    "-X k8s.io/component-base/version.gitVersion={version}",
    "-X k8s.io/component-base/version.gitMajor={major}",
    "-X k8s.io/component-base/version.gitMinor={minor}",
    "-X k8s.io/component-base/version.gitTreeState=clean",
    f"-X k8s.io/component-base/version.buildDate={BUILD_DATE}",
    "-X k8s.io/client-go/pkg/version.gitVersion={version}",
)
CONTAINERD = "github.com/containerd/containerd/v2"
CNI_PLUGINS = "github.com/containernetworking/plugins"
FLANNEL = "github.com/flannel-io/flannel"
BOTH = frozenset(ARCHES)
AMD64 = frozenset({"amd64"})


class BuildError(RuntimeError):
    """A component could not be built (module not served, compiler missing, ...)."""


@dataclass(frozen=True)
class Component:
    """One output binary: which module builds it, from which package, at whose version."""

    name: str  # file name in bin/
    module_dir: str  # directory under tests/k8s holding the go.mod
    package: str  # Go package path (or, for C, the file path inside ``version_of``)
    version_of: str  # module whose required version is this component's version
    ldflags: tuple[str, ...] = ()  # each formatted with version, major, minor
    tags: tuple[str, ...] = ()
    arches: frozenset[str] = BOTH
    cgo: frozenset[str] = frozenset()  # arches built with cgo (static), as upstream does
    drop_import: str = ""  # built from a copy of the module with this import removed from main.go
    language: str = "go"


def _k8s(name: str, arches: frozenset[str] = BOTH) -> Component:
    return Component(name, "kubernetes", f"{K8S}/cmd/{name}", K8S, K8S_VERSION_LDFLAGS, arches=arches)


CONTAINERD_LDFLAGS = (
    f"-X {CONTAINERD}/version.Version={{version}}",
    f"-X {CONTAINERD}/version.Package={CONTAINERD}",
)
CNI_LDFLAGS = (f"-X {CNI_PLUGINS}/pkg/utils/buildversion.BuildVersion={{version}}",)

COMPONENTS: tuple[Component, ...] = (
    _k8s("kubeadm"),
    _k8s("kubelet"),
    _k8s("kube-proxy"),
    _k8s("kubectl", AMD64),
    _k8s("kube-apiserver", AMD64),
    _k8s("kube-controller-manager", AMD64),
    _k8s("kube-scheduler", AMD64),
    # the /go-runner of upstream's server images
    Component("kube-log-runner", "kubernetes", "k8s.io/component-base/logs/kube-log-runner", K8S),
    Component("pause", "kubernetes", "build/pause/linux/pause.c", K8S, language="c"),
    Component("etcd", "etcd", "bake.test/k8s/etcd", "go.etcd.io/etcd/server/v3", arches=AMD64),
    Component("etcdctl", "etcd", "go.etcd.io/etcd/etcdctl/v3", "go.etcd.io/etcd/etcdctl/v3", arches=AMD64),
    Component("etcdutl", "etcd", "go.etcd.io/etcd/etcdutl/v3", "go.etcd.io/etcd/etcdutl/v3", arches=AMD64),
    # tags as containerd's Makefile for a static build; btrfs needs cgo, so it is left out
    Component(
        "containerd",
        "containerd",
        f"{CONTAINERD}/cmd/containerd",
        CONTAINERD,
        CONTAINERD_LDFLAGS,
        ("urfave_cli_no_docs", "no_btrfs"),
    ),
    Component(
        "containerd-shim-runc-v2",
        "containerd",
        f"{CONTAINERD}/cmd/containerd-shim-runc-v2",
        CONTAINERD,
        CONTAINERD_LDFLAGS,
        ("urfave_cli_no_docs", "no_grpc"),
    ),
    Component(
        "ctr",
        "containerd",
        f"{CONTAINERD}/cmd/ctr",
        CONTAINERD,
        CONTAINERD_LDFLAGS,
        ("urfave_cli_no_docs", "no_btrfs"),
    ),
    Component(
        "crictl",
        "cri-tools",
        "sigs.k8s.io/cri-tools/cmd/crictl",
        "sigs.k8s.io/cri-tools",
        ("-X sigs.k8s.io/cri-tools/pkg/version.Version={version}",),
    ),
    *(
        Component(p.rsplit("/", 1)[1], "cni-plugins", f"{CNI_PLUGINS}/plugins/{p}", CNI_PLUGINS, CNI_LDFLAGS)
        for p in ("main/bridge", "ipam/host-local", "main/loopback", "meta/portmap")
    ),
    # flannel's main.go links every backend; the Tencent VPC one needs an SDK module the proxy does not
    # serve, so that one import is dropped. Upstream builds amd64 with cgo (the udp backend), arm64 without.
    Component(
        "flanneld",
        "flannel",
        FLANNEL,
        FLANNEL,
        (f"-X {FLANNEL}/pkg/version.Version={{version}}",),
        cgo=AMD64,
        drop_import=f"{FLANNEL}/pkg/backend/tencentvpc",
    ),
    Component("install-conf", "flannel", f"{FLANNEL}/cmd/install_conf", FLANNEL),
    # the flannel CNI plugin's own module is not served; this is its last release inside the CNI plugins
    Component("flannel", "flannel-cni", f"{CNI_PLUGINS}/plugins/meta/flannel", CNI_PLUGINS, CNI_LDFLAGS),
    Component("coredns", "coredns", "github.com/coredns/coredns", "github.com/coredns/coredns"),
)


def components(arch: str) -> list[Component]:
    """The components built for ``arch`` (all of them on amd64; what a worker runs on arm64)."""
    _check_arch(arch)
    return [c for c in COMPONENTS if arch in c.arches]


def _check_arch(arch: str) -> None:
    if arch not in ARCHES:
        raise BuildError(f"--arch: {arch!r} is not one of {', '.join(ARCHES)}")


# --- cache key --------------------------------------------------------------------------------------


@cache
def go_version() -> str:
    """``go version``; part of the key, so a new Go rebuilds everything."""
    try:
        out = subprocess.run(
            ["go", "version"], capture_output=True, text=True, check=True, env=_go_base_env()
        )
    except (OSError, subprocess.CalledProcessError):
        return "go: not installed"
    return out.stdout.strip()


def _module_files() -> list[Path]:
    return sorted(p for p in HERE.rglob("go.*") if p.name in ("go.mod", "go.sum"))


def cache_key(arch: str) -> str:
    """Hash of the inputs that decide the outputs: go.mod/go.sum, Go, the arch and the recipe."""
    h = hashlib.sha256()
    for path in _module_files():
        h.update(path.relative_to(HERE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for path in sorted(HERE.glob("*/*.go")):  # the few-line mains (etcd)
        h.update(path.relative_to(HERE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(go_version().encode() + b"\0" + arch.encode() + b"\0")
    # the recipe: this file, and the image layout (so two clones never rewrite each other's archives)
    h.update(Path(__file__).read_bytes() + b"\0" + (HERE / "images.py").read_bytes())
    return h.hexdigest()[:16]


def output_dir(arch: str = "amd64") -> Path:
    """Where the build for ``arch`` lives (``bin/``, ``versions.json``, ``images/``); may not exist yet."""
    _check_arch(arch)
    return CACHE / cache_key(arch) / arch


# --- versions ---------------------------------------------------------------------------------------


@cache
def module_requirements(module_dir: str) -> Mapping[str, str]:
    """Module path -> required version, from ``tests/k8s/<module_dir>/go.mod``."""
    out = _go(["mod", "edit", "-json"], HERE / module_dir, _go_base_env())
    data = json.loads(out)
    return {r["Path"]: r["Version"] for r in data.get("Require") or []}


def component_version(c: Component) -> str:
    """The component's upstream version, as its go.mod pins it (pause: upstream Makefile's TAG)."""
    reqs = module_requirements(c.module_dir)
    if c.version_of not in reqs:
        raise BuildError(f"{c.module_dir}/go.mod does not require {c.version_of}")
    if c.language == "c":
        return pause_version()
    return reqs[c.version_of]


@cache
def module_source(module_dir: str, module: str) -> Path:
    """The module's directory in the Go module cache (downloaded and checked against go.sum)."""
    version = module_requirements(module_dir)[module]
    out = _go(["mod", "download", "-json", f"{module}@{version}"], HERE / module_dir, _go_base_env())
    info = json.loads(out)
    if info.get("Error"):
        raise BuildError(f"{module}@{version}: {info['Error']}")
    return Path(info["Dir"])


def pause_version() -> str:
    """``TAG`` of upstream's build/pause/Makefile (the version kubeadm's pause image carries)."""
    makefile = module_source("kubernetes", K8S) / "build/pause/Makefile"
    m = re.search(r"^TAG \?= (\S+)$", makefile.read_text(), re.M)
    if not m:
        raise BuildError(f"{makefile}: no 'TAG ?=' line")
    return m.group(1)


# --- building ---------------------------------------------------------------------------------------


def _go_base_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(GOTOOLCHAIN="local", GOFLAGS="-mod=readonly -buildvcs=false", GOCACHE=str(CACHE / GOCACHE_DIR))
    return env


def _go_env(arch: str, cgo: bool) -> dict[str, str]:
    env = _go_base_env()
    env.update(GOOS="linux", GOARCH=arch, CGO_ENABLED="1" if cgo else "0")
    if cgo:
        env["CC"] = f"{GNU_TRIPLET[arch]}-gcc"
    return env


def _go(args: Sequence[str], cwd: Path, env: Mapping[str, str]) -> str:
    try:
        out = subprocess.run(["go", *args], cwd=cwd, env=dict(env), capture_output=True, text=True)
    except OSError as e:
        raise BuildError(f"go: {e} (install Go)") from e
    if out.returncode != 0:
        raise BuildError(f"go {' '.join(args)} (in {cwd.name}) failed:\n{out.stderr.strip()}")
    return out.stdout


def _ldflags(c: Component, version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    return " ".join(("-s", "-w", *(f.format(version=version, major=major, minor=minor) for f in c.ldflags)))


def _patched_copy(c: Component, dest_root: Path) -> Path:
    """A writable copy of the component's module with ``drop_import`` removed from main.go."""
    src = module_source(c.module_dir, c.version_of)
    version = module_requirements(c.module_dir)[c.version_of]
    dest = dest_root / f"{c.name}-src-{version}-{os.getpid()}"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest)
    for p in [dest, *dest.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)
    main = dest / "main.go"
    line = f'\t_ "{c.drop_import}"\n'
    text = main.read_text()
    if text.count(line) != 1:
        raise BuildError(f"{c.version_of}@{version}: main.go no longer imports {c.drop_import} once")
    main.write_text(text.replace(line, ""))
    return dest


def build_component(c: Component, arch: str, bindir: Path, workdir: Path) -> None:
    """Compile one component into ``bindir``."""
    version = component_version(c)
    out = bindir / c.name
    if c.language == "c":
        _build_pause(c, arch, out, version)
        return
    cgo = arch in c.cgo
    env = _go_env(arch, cgo)
    args = ["build", "-trimpath"]
    ldflags = _ldflags(c, version)
    tags = list(c.tags)
    if cgo:  # a static binary with Go's own resolver and user lookup, as a static musl build behaves
        ldflags += ' -extldflags "-static"'
        tags += ["netgo", "osusergo"]
    if tags:
        args += ["-tags", ",".join(tags)]
    args += ["-ldflags", ldflags, "-o", str(out)]
    if not c.drop_import:
        _go([*args, c.package], HERE / c.module_dir, env)
        return
    cwd = _patched_copy(c, workdir)
    try:
        _go([*args, "."], cwd, env)
    finally:
        shutil.rmtree(cwd, ignore_errors=True)


def _build_pause(c: Component, arch: str, out: Path, version: str) -> None:
    """pause.c as upstream's build/pause/Makefile compiles it: -Os -Wall -Werror -static, stripped.

    Upstream's VERSION define is ``v$(TAG)-$(REV)`` with REV from ``git describe`` of the Kubernetes
    tree; the module cache has no git history, so REV is the Kubernetes tag the source comes from.
    """
    src = module_source(c.module_dir, c.version_of) / c.package
    k8s_version = module_requirements(c.module_dir)[c.version_of]
    prefix = "" if arch == host_arch() else f"{GNU_TRIPLET[arch]}-"
    for tool in (f"{prefix}gcc", f"{prefix}strip"):
        if shutil.which(tool) is None:
            pkg = "gcc" if not prefix else f"gcc-{GNU_TRIPLET[arch]}"
            raise BuildError(f"{tool} is not installed (apt-get install {pkg})")
    cflags = ["-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{version}-{k8s_version}"]
    for argv in ([f"{prefix}gcc", *cflags, "-o", str(out), str(src)], [f"{prefix}strip", str(out)]):
        res = subprocess.run(argv, capture_output=True, text=True)
        if res.returncode != 0:
            raise BuildError(f"{' '.join(argv)} failed:\n{res.stderr.strip()}")


def host_arch() -> str:
    """The Go name of this machine's architecture."""
    import platform

    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock: clones sharing the cache build each key once, the others wait and reuse it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class BuildResult:
    """What a build produced; ``seconds`` is 0 when the cache was reused."""

    arch: str
    directory: Path
    versions: dict[str, Any]
    seconds: float = 0.0
    built: list[str] = field(default_factory=list)


def read_versions(arch: str) -> dict[str, Any] | None:
    """versions.json of the current build for ``arch``, or None when it is not built."""
    path = output_dir(arch) / "versions.json"
    return json.loads(path.read_text()) if path.exists() else None


def build(arch: str, *, log: bool = True) -> BuildResult:
    """Build every component for ``arch`` unless the cache already holds this key."""
    _check_arch(arch)
    final = output_dir(arch)
    with file_lock(final.parent / f".{arch}.lock"):
        existing = read_versions(arch)
        if existing is not None:
            return BuildResult(arch, final, existing)
        started = time.monotonic()
        staging = final.parent / f".{arch}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "bin").mkdir(parents=True)
        work = CACHE / "src"
        work.mkdir(parents=True, exist_ok=True)
        versions: dict[str, Any] = {}
        built: list[str] = []
        for c in components(arch):
            t0 = time.monotonic()
            say(log, f"building {c.name} {component_version(c)} ({arch}) ...")
            build_component(c, arch, staging / "bin", work)
            took = time.monotonic() - t0
            say(log, f"built {c.name} in {took:.0f} s")
            versions[c.name] = {
                "version": component_version(c),
                "module": c.version_of,
                "package": c.package,
                "seconds": round(took, 1),
            }
            built.append(c.name)
        seconds = time.monotonic() - started
        doc = {
            "arch": arch,
            "key": final.parent.name,
            "go": go_version(),
            "build_seconds": round(seconds, 1),
            "components": versions,
        }
        (staging / "versions.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        os.rename(staging, final)
        return BuildResult(arch, final, doc, seconds, built)


def say(log: bool, msg: str) -> None:
    """Progress on stderr, so ``--json`` output stays clean."""
    if log:
        print(f"[k8s] {msg}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: build (or reuse) one architecture's binaries and images, print what is there."""
    ap = argparse.ArgumentParser(prog="python -m tests.k8s.build", description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="amd64", choices=ARCHES)
    ap.add_argument("--json", action="store_true", help="print versions.json (plus the image archives)")
    ap.add_argument("--no-images", action="store_true", help="binaries only")
    args = ap.parse_args(argv)
    from . import images

    started = time.monotonic()
    try:
        result = build(args.arch, log=not args.json)
        archives = {} if args.no_images else images.build_images(args.arch, log=not args.json)
    except (BuildError, images.ImageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    total = time.monotonic() - started
    if args.json:
        doc = dict(result.versions)
        doc["directory"] = str(result.directory)
        doc["images"] = {name: str(path) for name, path in archives.items()}
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    state = f"built in {result.seconds:.0f} s" if result.built else "reused from cache"
    print(f"{args.arch}: {result.directory} ({state})")
    for name, info in sorted(result.versions["components"].items()):
        print(f"  {name:26} {info['version']:12} {info['module']}")
    for name, path in archives.items():
        print(f"  image {name:48} {path.name}")
    print(f"{args.arch}: done in {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
