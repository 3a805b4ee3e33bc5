"""Air gap: profile checks, the per-architecture images seed, registry mirrors, and the bootstrap's
import-and-check run in the root sandbox of tests/test_bootstrap.py.

The images seed is read back with pycdlib, `isoinfo` and `blkid`, its checksums with `sha256sum -c`;
runtime configuration is parsed with tomllib. The container runtime itself is a test double (a fake
`ctr` that records what it imports): the real import is proven by the VM tier.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml

from builder import check
from builder.emit import iso
from builder.files import NodeFile
from builder.node import airgap, bootstrap, cloudinit, mirrors
from builder.plan import build_plan
from builder.validation.profile import load_profile
from tests.helpers import bake, bundle
from tests.test_bootstrap import DRIVER, Sandbox, fake_pki_files
from tests.test_bootstrap import can_sandbox as can_sandbox  # the fixture, by name

TOKEN = "abcdef.0123456789abcdef"
CA_HASH = "sha256:" + "0" * 64
EPOCH = "1767225600"  # 2026-01-01
FLANNEL = "ghcr.io/flannel-io/flannel:v0.28.7"
FLANNEL_CNI = "ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel1"
KUBE = [
    "registry.k8s.io/kube-apiserver:v1.37.2",
    "registry.k8s.io/kube-controller-manager:v1.37.2",
    "registry.k8s.io/kube-scheduler:v1.37.2",
    "registry.k8s.io/kube-proxy:v1.37.2",
    "registry.k8s.io/coredns/coredns:v1.14.6",
    "registry.k8s.io/pause:3.10.2",
    "registry.k8s.io/etcd:3.7.0-0",
]
KUBE_VIP = "ghcr.io/kube-vip/kube-vip:v1.0.3"
FLANNEL_MANIFEST = f"""\
apiVersion: v1
kind: Namespace
metadata: {{name: kube-flannel}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: kube-flannel-ds, namespace: kube-flannel}}
spec:
  selector: {{matchLabels: {{app: flannel}}}}
  template:
    metadata: {{labels: {{app: flannel}}}}
    spec:
      initContainers:
      - {{name: install-cni-plugin, image: {FLANNEL_CNI}}}
      - {{name: install-cni, image: {FLANNEL}}}
      containers:
      - {{name: kube-flannel, image: {FLANNEL}}}
"""


def docker_archive(path: Path, tags: list[str], filler: int = 0) -> Path:
    """A docker-archive tar (`docker save` layout) naming `tags`; `filler` bytes stand for its layers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        index = json.dumps([{"Config": "config.json", "RepoTags": tags, "Layers": ["layer.tar"]}]).encode()
        for name, data in (("manifest.json", index), ("config.json", b"{}")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("layer.tar")
        info.size = filler
        tar.addfile(info, _Zeros(filler))
    return path


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        n = min(len(buf), self.left)
        buf[:n] = b"\0" * n
        self.left -= n
        return n


def oci_archive(path: Path, names: list[str | None]) -> Path:
    """An OCI image-layout tar whose index names its manifests as `ctr images export` does."""
    manifests = []
    for name in names:
        desc: dict[str, object] = {"mediaType": "application/vnd.oci.image.manifest.v1+json"}
        if name is not None:
            desc["annotations"] = {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": "v1",
            }
        else:
            desc["annotations"] = {"org.opencontainers.image.ref.name": "v1"}
        manifests.append(desc)
    with tarfile.open(path, "w") as tar:
        for fname, data in (
            ("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
            ("index.json", json.dumps({"schemaVersion": 2, "manifests": manifests}).encode()),
        ):
            info = tarfile.TarInfo(fname)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def site(root: Path, *, arm64: bool = False, extra: str = "") -> Path:
    """A site profile next to its archives: ha-stacked with flannel, everything the nodes need."""
    docker_archive(root / "images/amd64/kube.tar", KUBE)
    docker_archive(root / "images/amd64/vip.tar", [KUBE_VIP])
    docker_archive(root / "images/flannel-amd64.tar", [FLANNEL, FLANNEL_CNI])
    (root / "cni").mkdir(exist_ok=True)
    (root / "cni/kube-flannel.yml").write_text(FLANNEL_MANIFEST)
    arm = ""
    if arm64:
        docker_archive(root / "images/arm64.tar", [*KUBE[3:6], FLANNEL, FLANNEL_CNI])
        arm = "      arm64: [images/arm64.tar]\n"
    profile = root / "site.yaml"
    profile.write_text(
        "extends: ha-stacked\n"
        "cluster:\n"
        "  name: site\n"
        "  cni: flannel\n"
        "  packages: {mode: prebaked}\n"
        "  airgap:\n"
        "    images:\n"
        "      amd64: [images/amd64, images/flannel-amd64.tar]\n"
        f"{arm}"
        "    cniManifests: [cni/kube-flannel.yml]\n"
        f"{extra}" + ("nodes:\n" + "".join(_nodes(arm64)) if arm64 else "")
    )
    return profile


def _nodes(arm64: bool) -> list[str]:
    rows = [f"  - {{name: cp-{i}, role: control-plane, ip: 10.77.0.1{i}}}\n" for i in (1, 2, 3)]
    rows.append("  - {name: worker-1, role: worker, ip: 10.77.0.21}\n")
    arch = "arm64" if arm64 else "amd64"
    rows.append(f"  - {{name: worker-2, role: worker, ip: 10.77.0.22, arch: {arch}}}\n")
    return rows


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------------
# profile checks


def test_validation_errors_name_the_field(tmp_path: Path) -> None:
    profile = site(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "cni/broken.yml").write_text("kind: [unclosed\n")
    proc = bake(
        "-p", str(profile),
        "--set", f"cluster.airgap.images.amd64=[{tmp_path}/images/amd64/kube.tar, {tmp_path}/missing.tar, "
        f"{tmp_path}/empty]",
        "--set", "nodes[4].arch=arm64",
        "--set", "cluster.images={kube-vipp: {imageTag: v1}}",
        "--set", f"cluster.airgap.cniManifests=[{tmp_path}/cni/broken.yml]",
        "--set", "cluster.registryMirrors={docker.io: [ftp://mirror]}",
        out=tmp_path / "out",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    err = proc.stderr
    for expected in (
        f"cluster.airgap.images.amd64[1]: no such file or directory: {tmp_path / 'missing.tar'}",
        "cluster.airgap.images.amd64[2]: directory",
        "holds no *.tar image archive",
        "cluster.airgap.images.arm64: required: nodes[4] (worker-2) runs on arm64",
        "cluster.images.kube-vipp: no such overridable image",
        "cluster.airgap.cniManifests[0]:",
        "is not a YAML manifest",
        "cluster.registryMirrors.docker.io[0]: 'ftp://mirror' is not a mirror URL",
    ):
        assert expected in err, err
    assert not (tmp_path / "out/site").exists()


def test_relative_paths_resolve_against_the_profile_file(tmp_path: Path) -> None:
    profile = site(tmp_path / "site")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    loaded = load_profile(str(profile))
    assert loaded.cluster.airgap is not None
    assert loaded.cluster.airgap.cni_manifests == [str(tmp_path / "site/cni/kube-flannel.yml")]
    child = elsewhere / "child.yaml"
    child.write_text(f"extends: {profile}\ncluster: {{airgap: {{extraImages: [docker.io/library/x:1]}}}}\n")
    merged = load_profile(str(child))
    assert merged.cluster.airgap is not None
    assert merged.cluster.airgap.images["amd64"][0] == str(tmp_path / "site/images/amd64")


def test_cni_manifests_required_and_archives_of_unused_arch(tmp_path: Path) -> None:
    profile = site(tmp_path)
    proc = bake(
        "-p", str(profile), "--set", "cluster.airgap.cniManifests=[]",
        "--set", "cluster.airgap.images.arm64=[images/amd64/kube.tar]", out=tmp_path / "out",
    )  # fmt: skip
    assert proc.returncode == 2
    assert "cluster.airgap.cniManifests: required with cluster.cni flannel" in proc.stderr
    assert "cluster.airgap.images.arm64: no node runs on arm64" in proc.stderr


def test_incomplete_archives_fail_the_bake(tmp_path: Path) -> None:
    profile = site(tmp_path)
    (tmp_path / "images/amd64/vip.tar").unlink()
    proc = bake("-p", str(profile), out=tmp_path / "out")
    assert proc.returncode == 2
    assert (
        "cluster.airgap.images.amd64: the archives lack 1 image(s) the amd64 nodes need: "
        f"{KUBE_VIP}" in proc.stderr
    )
    assert not (tmp_path / "out/site").exists()
    listing = subprocess.run(
        [sys.executable, "-m", "builder.cli", "images", "-p", str(profile)], capture_output=True, text=True
    )
    assert listing.returncode == 0 and f"amd64 archives: missing {KUBE_VIP}" in listing.stdout


def test_archive_refs(tmp_path: Path) -> None:
    docker = docker_archive(tmp_path / "d.tar", ["haproxy:3.2.25", "registry.k8s.io/pause:3.10.2"])
    assert airgap.archive_refs(docker) == {"docker.io/library/haproxy:3.2.25", "registry.k8s.io/pause:3.10.2"}
    oci = oci_archive(tmp_path / "o.tar", ["docker.io/osixia/keepalived:2.0.20"])
    assert airgap.archive_refs(oci) == {"docker.io/osixia/keepalived:2.0.20"}
    assert airgap.archive_refs(oci_archive(tmp_path / "u.tar", ["docker.io/x/y:1", None])) is None
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all")
    assert airgap.archive_refs(tmp_path / "junk.tar") is None


def test_unnamed_archive_is_checked_at_boot_only(tmp_path: Path) -> None:
    profile = site(tmp_path)
    oci_archive(tmp_path / "images/amd64/anon.tar", [None])
    (tmp_path / "images/amd64/vip.tar").unlink()
    proc = bake("-p", str(profile), out=tmp_path / "out", env={"SOURCE_DATE_EPOCH": EPOCH})
    assert proc.returncode == 0, proc.stderr
    assert "anon.tar do not name all their images" in proc.stdout
    # what it holds cannot be told: every node imports it (the worker, which needs no kube-vip, too)
    assert _env(tmp_path / "out/site", "worker-1")["BAKE_IMAGE_ARCHIVES"].split() == [
        "anon.tar",
        "kube.tar",
        "flannel-amd64.tar",
    ]


# --------------------------------------------------------------------------------------------------
# the images seed


@pytest.fixture(scope="module")
def baked_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("site")
    profile = site(root, arm64=True)
    proc = bake("-p", str(profile), out=root / "out", env={"SOURCE_DATE_EPOCH": EPOCH})
    assert proc.returncode == 0, proc.stderr
    return root, root / "out/site"


def test_images_seed_iso(baked_site: tuple[Path, Path]) -> None:
    root, tree = baked_site
    manifest = json.loads((tree / "manifest.json").read_text())
    seeds = {s["arch"]: s for s in manifest["imageSeeds"]}
    assert sorted(seeds) == ["amd64", "arm64"]
    sources = {
        "flannel-amd64.tar": root / "images/flannel-amd64.tar",
        "kube.tar": root / "images/amd64/kube.tar",
        "vip.tar": root / "images/amd64/vip.tar",
        "cni/kube-flannel.yml": root / "cni/kube-flannel.yml",
    }
    image = tree / "images/amd64/images.iso"
    assert seeds["amd64"]["iso"] == {
        "path": "images/amd64/images.iso",
        "sha256": _sha256(image),
        "size": image.stat().st_size,
    }
    assert {f["name"]: f["sha256"] for f in seeds["amd64"]["files"]} == {
        name: _sha256(path) for name, path in sources.items()
    }
    content = iso.read_tree_iso(image)
    sums = "".join(f"{_sha256(p)}  {n}\n" for n, p in sorted(sources.items())).encode()
    assert content == {**{n: p.read_bytes() for n, p in sources.items()}, "SHA256SUMS": sums}

    isoinfo = shutil.which("isoinfo")
    if isoinfo:
        info = subprocess.run([isoinfo, "-d", "-i", str(image)], capture_output=True, text=True, check=True)
        assert "Volume id: bakeimg-amd64" in info.stdout and "Rock Ridge" in info.stdout
        extracted = subprocess.run(
            [isoinfo, "-R", "-i", str(image), "-x", "/cni/kube-flannel.yml"], capture_output=True, check=True
        )
        assert extracted.stdout == FLANNEL_MANIFEST.encode()
    blkid = shutil.which("blkid")
    if blkid:
        for arch in ("amd64", "arm64"):
            label = subprocess.run(
                [blkid, "-o", "value", "-s", "LABEL", str(tree / f"images/{arch}/images.iso")],
                capture_output=True,
                text=True,
            )
            assert label.stdout.strip() == f"bakeimg-{arch}"
    assert set(iso.read_tree_iso(tree / "images/arm64/images.iso")) == {
        "arm64.tar", "cni/kube-flannel.yml", "SHA256SUMS",
    }  # fmt: skip

    # the HTTP tree carries the same files, verifiable with sha256sum
    http = tree / "http/_images/amd64"
    assert (http / "SHA256SUMS").read_bytes() == sums
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=http, check=True)
    listed = (tree / "SHA256SUMS").read_text()
    assert f"{_sha256(image)}  images/amd64/images.iso\n" in listed
    assert seeds["amd64"]["images"][-2:] == [FLANNEL_CNI, FLANNEL]
    report = check.check_tree(tree, secrets_dir=bundle(root / "out", "site"))
    assert report.errors == 0, [f for f in report.findings if f.level == "error"]


def test_images_seed_is_reproducible_and_kept(baked_site: tuple[Path, Path], tmp_path: Path) -> None:
    root, tree = baked_site
    other = bake("-p", str(root / "site.yaml"), out=tmp_path / "out", env={"SOURCE_DATE_EPOCH": EPOCH})
    assert other.returncode == 0, other.stderr
    for arch in ("amd64", "arm64"):
        rel = f"images/{arch}/images.iso"
        assert (tmp_path / "out/site" / rel).read_bytes() == (tree / rel).read_bytes()
    before = (tmp_path / "out/site/images/amd64/images.iso").stat().st_ino
    again = bake("-p", str(root / "site.yaml"), out=tmp_path / "out", env={"SOURCE_DATE_EPOCH": EPOCH})
    assert again.returncode == 0 and "wrote 0 files" in again.stdout
    assert (tmp_path / "out/site/images/amd64/images.iso").stat().st_ino == before


@pytest.mark.integration
def test_large_archives_are_streamed(tmp_path: Path) -> None:
    profile = site(tmp_path)
    size = 96 << 20
    docker_archive(tmp_path / "images/amd64/big.tar", ["docker.io/library/big:1"], filler=size)
    # VmHWM, the peak of this process's own memory: ru_maxrss would also count the parent's (pytest's)
    # resident pages that Linux carries over through the exec that started it
    code = (
        "import re, sys\n"
        "from builder.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "hwm = re.search(r'^VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read(), re.M)\n"
        "print(hwm.group(1), file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "-p", str(profile), "--out", str(tmp_path / "out"), "-q"],
        capture_output=True,
        text=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH},
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    peak_mib = int(proc.stderr.split()[-1]) // 1024
    assert peak_mib < 120, f"peak RSS {peak_mib} MiB with a {size >> 20} MiB archive: not streamed"
    image = tmp_path / "out/site/images/amd64/images.iso"
    assert image.stat().st_size > size
    assert _sha256(tmp_path / "out/site/http/_images/amd64/big.tar") == _sha256(
        tmp_path / "images/amd64/big.tar"
    )


# --------------------------------------------------------------------------------------------------
# registry mirrors


def _node_files(profile: str, node: str, *sets: str) -> dict[str, NodeFile]:
    plan = build_plan(load_profile(profile, sets))
    n = plan.node(node)
    files = cloudinit.node_files(plan, n, pki_files=fake_pki_files(plan, n), token=TOKEN, ca_hash=CA_HASH)
    return {f.path: f for f in files}


MIRRORS = (
    "cluster.registryMirrors={docker.io: [https://mirror.local, http://10.0.0.5:5000/dockerhub], "
    "quay.io: [https://q.local:8443]}"
)


def _toml(content: bytes) -> dict[str, object]:
    return tomllib.loads(content.decode())


def test_containerd_hosts_toml() -> None:
    files = _node_files("single-master", "worker-1", MIRRORS)
    docker = _toml(files["/etc/containerd/certs.d/docker.io/hosts.toml"].content)
    assert docker == {
        "server": "https://registry-1.docker.io",
        "host": {
            "https://mirror.local": {"capabilities": ["pull", "resolve"]},
            "http://10.0.0.5:5000/dockerhub": {"capabilities": ["pull", "resolve"]},
        },
    }
    assert list(docker["host"]) == ["https://mirror.local", "http://10.0.0.5:5000/dockerhub"]  # type: ignore[call-overload]
    quay = _toml(files["/etc/containerd/certs.d/quay.io/hosts.toml"].content)
    assert quay["server"] == "https://quay.io"
    v3 = _toml(files["/etc/bake/containerd/config-v3.toml"].content)
    assert v3["plugins"]["io.containerd.cri.v1.images"]["registry"] == {"config_path": mirrors.CERTS_D}  # type: ignore[index]
    v2 = _toml(files["/etc/bake/containerd/config-v2.toml"].content)
    assert v2["plugins"]["io.containerd.grpc.v1.cri"]["registry"] == {"config_path": mirrors.CERTS_D}  # type: ignore[index]
    # without mirrors: no config_path, no certs.d
    plain = _node_files("single-master", "worker-1")
    assert not any(p.startswith(mirrors.CERTS_D) for p in plain)
    plain_v3 = _toml(plain["/etc/bake/containerd/config-v3.toml"].content)
    assert "registry" not in plain_v3["plugins"]["io.containerd.cri.v1.images"]  # type: ignore[index]


def test_crio_registries_dropin() -> None:
    files = _node_files("single-master", "cp-1", MIRRORS, "cluster.containerRuntime=crio")
    conf = _toml(files[mirrors.REGISTRIES_DROPIN].content)
    assert conf == {
        "registry": [
            {
                "prefix": "docker.io",
                "location": "docker.io",
                "mirror": [
                    {"location": "mirror.local"},
                    {"location": "10.0.0.5:5000/dockerhub", "insecure": True},
                ],
            },
            {"prefix": "quay.io", "location": "quay.io", "mirror": [{"location": "q.local:8443"}]},
        ]
    }
    assert not any(p.startswith(mirrors.CERTS_D) for p in files)


# --------------------------------------------------------------------------------------------------
# the bootstrap: import and check, with a fake ctr


FAKE_CTR = r"""#!/bin/bash
# TEST DOUBLE for containerd's `ctr`: `-n k8s.io images import FILE` records the names a docker-archive
# gives its images (normalized as containerd does), `-n k8s.io images ls -q` lists them.
printf '%s\n' "ctr $*" >>/var/tmp/stub-calls.log
db=/var/lib/fake-ctr/images
mkdir -p /var/lib/fake-ctr
touch "$db"
[[ ${1:-} == -n && ${2:-} == k8s.io ]] || { echo "fake ctr: expected -n k8s.io" >&2; exit 2; }
case "${3:-} ${4:-}" in
"images import")
    "$PY" - "$5" "$db" <<'EOF'
import json, sys, tarfile
with tarfile.open(sys.argv[1]) as tar:
    tags = [t for m in json.load(tar.extractfile("manifest.json")) for t in m["RepoTags"]]
with open(sys.argv[2], "a") as db:
    for tag in tags:
        first = tag.split("/")[0]
        if "/" not in tag or ("." not in first and ":" not in first):
            tag = "docker.io/" + (tag if "/" in tag else "library/" + tag)
        db.write(tag + "\n")
EOF
    ;;
"images ls")
    [[ ${5:-} == -q ]] || exit 2
    sort -u "$db"
    ;;
*) echo "fake ctr: unexpected $*" >&2; exit 2 ;;
esac
"""

FAKE_BLKID = r"""#!/bin/bash
# TEST DOUBLE for blkid: a label is "attached" when $SEEDS/<label> exists.
printf '%s\n' "blkid $*" >>/var/tmp/stub-calls.log
[[ ${1:-} == -L && -d "@SEEDS@/${2:-}" ]] || exit 2
echo "/dev/fake-seed/$2"
"""

FAKE_MOUNT = r"""#!/bin/bash
# TEST DOUBLE for mount of the fake seed device (a bind mount of its files); anything else is real.
if [[ " $* " == *" /dev/fake-seed/"* ]]; then
    printf '%s\n' "mount $*" >>/var/tmp/stub-calls.log
    dev=$(printf '%s\n' "$@" | grep '^/dev/fake-seed/')
    PATH=/usr/sbin:/usr/bin:/sbin:/bin exec mount --bind "@SEEDS@/${dev##*/}" "${!#}"
fi
PATH=/usr/sbin:/usr/bin:/sbin:/bin exec mount "$@"
"""

FAKE_CURL = r"""#!/bin/bash
# TEST DOUBLE for curl: URLs under http://seeds.test/ are served from @HTTP@, others as the generic stub.
printf '%s\n' "curl $*" >>/var/tmp/stub-calls.log
out= url=
while (($#)); do
    case $1 in -o) out=$2; shift ;; http*) url=$1 ;; esac
    shift
done
if [[ $url == http://seeds.test/* ]]; then
    src="@HTTP@/${url#http://seeds.test/}"
    [[ -f $src ]] || exit 22
    cp "$src" "$out"
    exit 0
fi
[[ -n $out ]] && echo downloaded >"$out"
exit 0
"""

FAKE_UDEVADM = "#!/bin/bash\nprintf '%s\\n' \"udevadm $*\" >>/var/tmp/stub-calls.log\n"
_INSTALL_STUBS = 'for c in $STUBBED; do install -m 0755 "$S/stub" "/usr/local/sbin/$c"; done\n'
_INSTALL_EXTRA = 'for f in "$S"/extra/*; do install -m 0755 "$f" "/usr/local/sbin/${f##*/}"; done\n'


class AirgapSandbox(Sandbox):
    """The bootstrap sandbox plus the test doubles above and the images seed's files."""

    def __init__(self, root: Path, user_data: bytes, seeds: Path, http: Path) -> None:
        # installed from the baked user-data as the node does it (write_files, then runcmd's tar)
        super().__init__(root, _Rendered(_disk_node_files(user_data), user_data))  # type: ignore[arg-type]
        assert _INSTALL_STUBS in DRIVER, "the sandbox driver changed: update AirgapSandbox"
        (root / "driver.sh").write_text(
            DRIVER.replace(
                _INSTALL_STUBS,
                _INSTALL_STUBS + _INSTALL_EXTRA,
            )
        )
        extra = root / "extra"
        extra.mkdir()
        for name, text in (
            ("ctr", FAKE_CTR), ("blkid", FAKE_BLKID), ("mount", FAKE_MOUNT), ("curl", FAKE_CURL),
            ("udevadm", FAKE_UDEVADM),
        ):  # fmt: skip
            (extra / name).write_text(text.replace("@SEEDS@", str(seeds)).replace("@HTTP@", str(http)))


class _Rendered:
    def __init__(self, files: list[NodeFile], user_data: bytes) -> None:
        self.files = files
        self.user_data = user_data


def _disk_node_files(user_data: bytes) -> list[NodeFile]:
    written = check.write_files_of(user_data)
    return [NodeFile(path, content, int(perms, 8)) for path, (content, perms, _owner) in written.items()]


def _baked_node_files(tree: Path, node: str) -> list[NodeFile]:
    return _disk_node_files((tree / "nodes" / node / "user-data").read_bytes())


def _seed_dir(tree: Path, arch: str, into: Path) -> Path:
    """The files of the baked images ISO, as the node would see them mounted."""
    target = into / airgap.label(arch)
    for name, data in iso.read_tree_iso(tree / f"images/{arch}/images.iso").items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(data)
    return target


def _env(tree: Path, node: str) -> dict[str, str]:
    files = {f.path: f for f in _baked_node_files(tree, node)}
    lines = files[bootstrap.layout.ENV_PATH].content.decode().splitlines()[1:]
    return {k: (shlex.split(v) or [""])[0] for k, _, v in (ln.partition("=") for ln in lines)}


def test_env_names_the_seed(baked_site: tuple[Path, Path]) -> None:
    _, tree = baked_site
    init, worker = _env(tree, "cp-1"), _env(tree, "worker-2")
    assert init["BAKE_AIRGAP"] == "yes" and init["BAKE_IMAGES_LABEL"] == "bakeimg-amd64"
    assert init["BAKE_IMAGE_ARCHIVES"].split() == ["kube.tar", "vip.tar", "flannel-amd64.tar"]
    # a worker imports only the archives holding an image it runs: not kube-vip's
    assert _env(tree, "worker-1")["BAKE_IMAGE_ARCHIVES"].split() == ["kube.tar", "flannel-amd64.tar"]
    assert init["BAKE_CNI_MANIFESTS"] == "cni/kube-flannel.yml" and init["BAKE_CNI_URLS"] == ""
    assert init["BAKE_IMAGES"].split() == [*KUBE, KUBE_VIP, FLANNEL_CNI, FLANNEL]
    assert worker["BAKE_IMAGES_LABEL"] == "bakeimg-arm64" and worker["BAKE_CNI_MANIFESTS"] == ""
    assert worker["BAKE_IMAGES"].split() == [*KUBE[3:6], FLANNEL_CNI, FLANNEL]


def _airgap_sandbox(
    tmp_path: Path, tree: Path, node: str, arch: str = "amd64", attach: bool = True
) -> AirgapSandbox:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    if attach:
        _seed_dir(tree, arch, seeds)
    user_data = (tree / "nodes" / node / "user-data").read_bytes()
    return AirgapSandbox(tmp_path / "sb", user_data, seeds, tree / "http")


@pytest.mark.integration
@pytest.mark.usefixtures("can_sandbox")
def test_init_imports_checks_then_runs_kubeadm(tmp_path: Path, baked_site: tuple[Path, Path]) -> None:
    _, tree = baked_site
    sb = _airgap_sandbox(tmp_path, tree, "cp-1").run("run\nreboot\nrun\n")
    assert sb.rcs == [0, 0], sb.text("stdout.log")
    calls = sb.runs[0]
    imports = [c for c in calls if c.startswith("ctr -n k8s.io images import")]
    # side by side, as many at a time as there are CPUs: each archive once, in any order
    assert sorted(c.rsplit("/", 1)[-1] for c in imports) == ["flannel-amd64.tar", "kube.tar", "vip.tar"]
    init = calls.index("kubeadm init --config /run/kubeadm/kubeadm.yaml --skip-token-print")
    listed = calls.index("ctr -n k8s.io images ls -q")
    assert calls.index("systemctl restart containerd") < calls.index(imports[0]) and listed < init
    # kubeadm's version is asked once, beside the imports, and the wait phase reads that answer
    assert calls.count("kubeadm version -o short") == 1
    assert calls.index("kubeadm version -o short") < listed
    assert "mount -o ro /dev/fake-seed/bakeimg-amd64 /run/bake/images-seed" in calls
    assert not any(c.startswith("curl") and "/readyz" not in c for c in calls), "nothing is downloaded"
    applied = [c for c in calls[init:] if " apply " in c]
    assert applied and applied[0].endswith(
        "apply --server-side --force-conflicts --validate=false -k /var/lib/bake/cni"
    )
    assert "all 10 images this node needs are in containerd" in sb.text("bootstrap.log")
    assert (sb.root / "out/state/bootstrap.done").exists()
    # what `apply -k` reads: the kustomization beside every manifest it names, the seeded one as it was
    work = sb.root / "upper/var/lib/bake/cni"
    kustomization = yaml.safe_load((work / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["kube-flannel.yml"]
    assert (work / "kube-flannel.yml").read_text() == FLANNEL_MANIFEST


@pytest.mark.integration
@pytest.mark.usefixtures("can_sandbox")
def test_missing_image_stops_before_kubeadm(tmp_path: Path, baked_site: tuple[Path, Path]) -> None:
    _, tree = baked_site
    sb = _airgap_sandbox(tmp_path, tree, "cp-2")
    # a seed whose vip.tar lacks kube-vip (the bake refuses such archives; a swapped disk does not)
    docker_archive(tmp_path / "seeds/bakeimg-amd64/vip.tar", ["docker.io/library/other:1"])
    sb.run("run\n")
    assert sb.rcs == [1]
    log = sb.text("bootstrap.log")
    missing = f"1 image(s) this node needs are not in containerd after importing the images seed: {KUBE_VIP}"
    assert missing in log
    assert not any(c.startswith("kubeadm join") for c in sb.calls)
    assert "images" in sb.steps()  # imported once; the check runs again at every boot


@pytest.mark.integration
@pytest.mark.usefixtures("can_sandbox")
def test_an_archive_that_does_not_import_fails_the_step(
    tmp_path: Path, baked_site: tuple[Path, Path]
) -> None:
    _, tree = baked_site
    sb = _airgap_sandbox(tmp_path, tree, "cp-2")
    (tmp_path / "seeds/bakeimg-amd64/vip.tar").write_bytes(b"not a tar archive")  # the fake ctr fails on it
    sb.run("run\n")
    assert sb.rcs == [1]
    log = sb.text("bootstrap.log")
    assert "importing vip.tar failed" in log
    assert "1 image archive(s) could not be imported into containerd" in log
    # the imports beside it ran to their end; nothing after the step did
    imports = [c.rsplit("/", 1)[-1] for c in sb.calls if c.startswith("ctr -n k8s.io images import")]
    assert sorted(imports) == ["flannel-amd64.tar", "kube.tar", "vip.tar"]
    assert not any(c.startswith(("ctr -n k8s.io images ls", "kubeadm join")) for c in sb.calls)
    assert "images" not in sb.steps()


@pytest.mark.integration
@pytest.mark.usefixtures("can_sandbox")
def test_no_seed_attached(tmp_path: Path, baked_site: tuple[Path, Path]) -> None:
    _, tree = baked_site
    sb = _airgap_sandbox(tmp_path, tree, "worker-1", attach=False).run("run\n")
    assert sb.rcs == [1]
    assert "no images seed: attach the ISO labelled bakeimg-amd64" in sb.text("bootstrap.log")
    assert not any(c.startswith(("ctr", "kubeadm join")) for c in sb.calls)


@pytest.mark.integration
@pytest.mark.usefixtures("can_sandbox")
def test_http_seed_when_no_disk(tmp_path: Path, baked_site: tuple[Path, Path]) -> None:
    root, _ = baked_site
    proc = bake(
        "-p", str(root / "site.yaml"), "--set", "cluster.seed.httpBaseUrl=http://seeds.test",
        out=tmp_path / "out", env={"SOURCE_DATE_EPOCH": EPOCH},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    tree = tmp_path / "out/site"
    assert _env(tree, "worker-2")["BAKE_IMAGES_URL"] == "http://seeds.test/_images/arm64"
    sb = _airgap_sandbox(tmp_path, tree, "worker-2", arch="arm64", attach=False).run("run\n")
    assert sb.rcs == [0], sb.text("stdout.log")
    fetched = [c for c in sb.calls if c.startswith("curl") and "seeds.test" in c]
    assert len(fetched) == 1 and fetched[0].endswith("http://seeds.test/_images/arm64/arm64.tar")
    assert "all 5 images this node needs are in containerd" in sb.text("bootstrap.log")
    assert not (sb.root / "upper/var/lib/bake/images-fetch").exists()  # removed once imported


@pytest.mark.parametrize(
    "mirrors",
    [{"docker.io\n": ["https://mirror.example"]}, {"docker.io": ["https://mirror.example\n"]}],
    ids=["host", "url"],
)
def test_a_final_newline_is_not_a_mirror(mirrors: dict[str, list[str]]) -> None:
    """Python's `$` matches before a final newline; the mirror patterns end in \\Z."""
    assert list(airgap.mirror_problems(mirrors))
