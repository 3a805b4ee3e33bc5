"""The real upstream kubeadm, etcd, kube-apiserver and kubectl judge every embedded profile (no VMs).

For each profile baked by the CLI into a temp dir, every node's files are laid out as cloud-init's
``write_files`` would lay them (from the node's own user-data), and then:

- ``kubeadm config validate`` accepts every kubeadm config file the bake writes;
- ``kubeadm init phase certs all`` / ``kubeconfig all`` on the first control plane, ``kubeadm join phase
  control-plane-prepare certs`` / ``kubeconfig`` on every joining control plane and ``kubeadm init phase
  certs etcd-*`` on every external etcd member (with the config of kubeadm's HA etcd guide) say they use
  every existing file, generate nothing and leave every byte and mode as baked;
- kubeadm's own etcd manifest for an external etcd member (``kubeadm init phase etcd local`` with the
  guide's config) is the static pod the bake wrote, flag order included;
- a real etcd (the bake's own static pods for external members, kubeadm's for stacked ones),
  kube-apiserver and kube-controller-manager run the container command lines of those manifests on
  the host (paths mapped through the pod's hostPath volumes to the node's copy), each node in a
  network namespace made here with its baked address on a bridge, so the command lines run
  unchanged. The ``haproxy-keepalived`` profile's endpoint is the baked haproxy.cfg run by Debian's
  haproxy; keepalived and kube-vip only hold the VIP, which the first control plane's namespace
  holds instead;
- ``kubectl --kubeconfig outputs/<cluster>/admin.conf`` works once ``kubeadm init phase upload-config``
  has bound ``kubeadm:cluster-admins`` as ``kubeadm init`` does;
- join credentials (``cluster.join: certificate``, the default): with every bootstrap token deleted, a
  worker's baked ``join.conf`` is ``system:node:<name>``, kubeadm's file discovery accepts it and reads
  the cluster's configuration with it, the real kubelet's TLS bootstrap with it is auto-approved; an
  expired credential and another node's are refused, and the token kubeadm init made does not work;
- ``cluster.join: token``: after ``kubeadm init phase bootstrap-token`` creates the baked token, a
  baked worker's ``kubeadm join phase preflight`` discovers the cluster through the pinned CA hash, the
  same discovery with another hash is refused, and a deleted token comes back from the baked config;
- the versions table row of the built minor agrees with the built kubeadm (images, feature gates,
  accepted API versions and fields, kubelet flags).

Binaries come from ``tests.k8s.locate()`` (``make k8s``); the tests skip only when they are not built.
One cluster is brought up per profile and shared by the tests of that profile.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from builder.errors import BakeError
from builder.model import LoadBalancerKind, Role, versions
from builder.node import kubeadm_config
from builder.pki import certlist
from builder.pki import crypto as pki
from builder.plan import ClusterPlan, build_plan
from builder.validation.profile import load_profile
from tests import k8s

from .helpers import bake, bundle, disk_files

ROOT = Path(__file__).resolve().parents[1]
BIN = k8s.locate("amd64")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.realk8s,
    pytest.mark.skipif(BIN is None, reason="upstream Kubernetes binaries are not built (make k8s)"),
]

INIT_CONFIG = "/run/kubeadm/kubeadm.yaml"
JOIN_CONFIG = "/run/kubeadm/kubeadm-join-config.yaml"
GUIDE_ETCD_CONFIG = "/run/kubeadm/etcd-member.yaml"  # written by the test, as kubeadm's HA etcd guide does
UP_TIMEOUT = 180.0


def _profiles() -> dict[str, ClusterPlan]:
    """Each embedded profile's plan: only used to choose which tests apply to it."""
    return {p.stem: build_plan(load_profile(p.stem)) for p in sorted((ROOT / "profiles").glob("*.yaml"))}


PLANS = _profiles()
WITH_CONTROL_PLANE = [n for n, p in PLANS.items() if p.control_planes]
WITH_JOINING_CONTROL_PLANES = [n for n, p in PLANS.items() if len(p.control_planes) > 1]
WITH_WORKERS = [
    n for n, p in PLANS.items() if p.control_planes and any(x.role is Role.WORKER for x in p.nodes)
]
WITH_ETCD_MEMBERS = [n for n, p in PLANS.items() if any(x.role is Role.ETCD for x in p.nodes)]


def tool(name: str) -> str:
    assert BIN is not None
    path = BIN / name
    assert path.is_file(), f"{path} is missing: the k8s build must provide {name}"
    return str(path)


# --------------------------------------------------------------------------------------------------
# the baked tree, laid out per node


@dataclass
class Node:
    name: str
    role: str
    ip: str
    root: Path  # pristine: exactly what cloud-init's write_files writes; copy before running anything


@dataclass
class Baked:
    profile: str
    tree: Path  # outputs/<cluster>
    manifest: dict[str, Any]
    nodes: dict[str, Node]
    scratch: Path
    secrets: Path  # the cluster's secrets bundle, kept apart from the tree
    sets: tuple[str, ...] = ()  # the --set arguments it was baked with

    def role(self, role: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.role == role]

    @property
    def init_node(self) -> Node:
        (node,) = [n for n in self.nodes.values() if (n.root / INIT_CONFIG.lstrip("/")).is_file()]
        return node

    def copy(self, node: Node, label: str = "") -> Path:
        """A private copy of the node's tree (kubeadm may write into it)."""
        dest = self.scratch / f"{node.name}{'-' + label if label else ''}-{time.monotonic_ns()}"
        shutil.copytree(node.root, dest, symlinks=True)
        return dest


def write_files(user_data: Path, root: Path) -> None:
    """Lay out the node's files as cloud-init's write_files does (content, encoding, permissions)."""
    doc = yaml.safe_load(user_data.read_bytes())
    for name, (data, mode, _) in disk_files(doc).items():  # the first-boot archive unpacked, as runcmd does
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(int(mode or "0644", 8))


def bake_profile(profile: str, out: Path, *sets: str) -> Baked:
    args = ["--profile", profile, "-q"]
    for s in sets:
        args += ["--set", s]
    proc = bake(*args, out=out / "outputs")
    assert proc.returncode == 0, proc.stderr
    (tree,) = [p.resolve() for p in (out / "outputs").iterdir() if p.is_symlink()]
    manifest = json.loads((tree / "manifest.json").read_text())
    nodes = {}
    for entry in manifest["nodes"]:
        root = out / "nodes" / entry["name"]
        write_files(tree / "nodes" / entry["name"] / "user-data", root)
        nodes[entry["name"]] = Node(entry["name"], entry["role"], entry["ip"], root)
    scratch = out / "scratch"
    scratch.mkdir()
    return Baked(profile, tree, manifest, nodes, scratch, bundle(out / "outputs", manifest["cluster"]), sets)


@pytest.fixture(scope="module")
def baked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Baked:
    """The profile named by the (indirect) parameter, baked once per module; `profile+PATH=VALUE`
    bakes it with that --set (a variant of an embedded profile, e.g. `+cluster.join=token`)."""
    name, _, setting = str(request.param).partition("+")
    made = bake_profile(name, tmp_path_factory.mktemp(f"real-{name}"), *([setting] if setting else []))
    made.profile = str(request.param)
    return made


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under root: mode and SHA-256."""
    return {
        str(p.relative_to(root)): (p.stat().st_mode & 0o7777, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------------------------------
# running things (optionally inside the network namespace)


def run(
    argv: list[str], *, netns: str | None = None, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    full = ["ip", "netns", "exec", netns, *argv] if netns else argv
    proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check:
        assert proc.returncode == 0, (
            f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def kubeadm(
    root: Path, *args: str, netns: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """kubeadm chrooted into the node's tree (--rootfs): every path in the baked config resolves unchanged."""
    proc = run([tool("kubeadm"), *args, "--rootfs", str(root)], netns=netns, check=check)
    assert "dl.k8s.io" not in proc.stderr, f"kubeadm went looking for a version online:\n{proc.stderr}"
    return proc


# Every line a phase may print when it reuses what is on disk; anything else (Generating, Writing,
# a warning about a kubeconfig's server) fails the test.
REUSE_LINES = {
    "certs": re.compile(
        r'\[certs\] (Using certificateDir folder "/etc/kubernetes/pki"'
        r"|Using existing \S+ (certificate authority|certificate and key on disk)"
        r'|Using the existing "\S+" certificate and key'  # join's wording
        r'|Valid certificates and keys now exist in "/etc/kubernetes/pki"'
        r'|Using the existing "sa" key'
        r"|External etcd mode: Skipping \S+ certificate (authority )?generation)$"
    ),
    "kubeconfig": re.compile(
        r'\[kubeconfig\] (Using kubeconfig folder "/etc/kubernetes"'
        r"|Generating kubeconfig files"  # join's header line, printed before it looks at the files
        r'|Using existing kubeconfig file: "/etc/kubernetes/[a-z-]+\.conf")$'
    ),
}


# The one warning a baked config may cause: a load balancer on the control planes themselves
# (haproxy-keepalived) cannot listen on kube-apiserver's port, so the endpoint's port differs from
# bindPort, as in kubeadm's own HA guide (port 8443).
LB_PORT_WARNING = "port specified in controlPlaneEndpoint overrides bindPort in the controlplane address"


# A join through a node's own credential (cluster.join: certificate) reads what system:node:<name> may
# read: kubeadm's RBAC opens cluster-info to anonymous clients and the kube-proxy ConfigMap to the token's
# group only, and kubeadm goes on without them, as it says (file.go, componentconfigs/configset.go).
# Neither is used by a join: the CA is pinned in the file, and kube-proxy's config only by init/upgrade.
NODE_CREDENTIAL_WARNINGS = (
    "Could not access the cluster-info ConfigMap for refreshing the cluster-info information, but the TLS "
    "cert is valid so proceeding",
    'No kubeproxy.config.k8s.io/v1alpha1 config is loaded. Continuing without it: configmaps "kube-proxy" '
    'is forbidden: User "system:node:',
)


def allowed_warnings(baked: Baked) -> tuple[str, ...]:
    plan = PLANS[baked.profile.partition("+")[0]]
    lb = (LB_PORT_WARNING,) if plan.control_planes and plan.api_endpoint().port != 6443 else ()
    return lb + (NODE_CREDENTIAL_WARNINGS if baked.manifest["join"] == "certificate" else ())


def assert_reused(
    proc: subprocess.CompletedProcess[str], phase: str, expect_files: int, allowed: tuple[str, ...] = ()
) -> list[str]:
    """kubeadm said it reused each file, printed nothing else, and warned about nothing unexpected.

    A join phase first reads the cluster's configuration ("[preflight] Reading configuration ...").
    """
    lines = [
        line for line in proc.stdout.splitlines() if line.strip() and not line.startswith("[preflight] ")
    ]
    unexpected = [line for line in lines if not REUSE_LINES[phase].match(line)]
    assert not unexpected, f"kubeadm did more than reuse files:\n{proc.stdout}\n{proc.stderr}"
    warnings = [
        line
        for line in proc.stderr.splitlines()
        if re.match(r"[WE]\d{4} ", line) and not any(a in line for a in allowed)
    ]
    assert not warnings, f"kubeadm warned:\n{proc.stderr}"
    used = [line for line in lines if "existing" in line]
    assert len(used) == expect_files, proc.stdout
    return used


# --------------------------------------------------------------------------------------------------
# 1. every kubeadm config file validates


@pytest.mark.parametrize("baked", WITH_CONTROL_PLANE, indirect=True)
def test_every_kubeadm_config_validates(baked: Baked) -> None:
    checked = []
    for node in baked.nodes.values():
        for path in (INIT_CONFIG, JOIN_CONFIG):
            config = node.root / path.lstrip("/")
            if not config.is_file():
                continue
            # chrooted into the node's files: kubeadm checks that a discovery file exists
            proc = run([tool("kubeadm"), "config", "validate", "--config", path, "--rootfs", str(node.root)])
            assert proc.stdout.strip() == "ok", proc.stdout
            assert not re.search(r"^[WE]\d{4} ", proc.stderr, re.M), f"{node.name}: {proc.stderr}"
            checked.append(node.name)
    expected = [n.name for n in baked.nodes.values() if n.role != "etcd"]
    assert sorted(checked) == sorted(expected)  # one config per kubeadm node, none for etcd members


@pytest.mark.parametrize("baked", WITH_CONTROL_PLANE, indirect=True)
def test_every_runtime_config_pins_kubeadms_pause_image(baked: Baked) -> None:
    """containerd's sandbox image on every node is the pause image kubeadm lists for the baked config."""
    config = baked.init_node.root / INIT_CONFIG.lstrip("/")
    images = run([tool("kubeadm"), "config", "images", "list", "--config", str(config)]).stdout.split()
    (pause,) = [i for i in images if i.rsplit("/", 1)[1].startswith("pause:")]
    for node in baked.nodes.values():
        v2 = tomllib.loads((node.root / "etc/bake/containerd/config-v2.toml").read_text())
        v3 = tomllib.loads((node.root / "etc/bake/containerd/config-v3.toml").read_text())
        assert v2["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"] == pause, node.name
        assert v3["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == pause, node.name


# --------------------------------------------------------------------------------------------------
# 2. kubeadm's certs / kubeconfig phases reuse every baked file


@pytest.mark.parametrize("baked", WITH_CONTROL_PLANE, indirect=True)
def test_init_phases_reuse_every_baked_file(baked: Baked) -> None:
    root = baked.copy(baked.init_node)
    before = snapshot(root)
    stacked = baked.manifest["topology"] == "stacked"
    certs = kubeadm(root, "init", "phase", "certs", "all", "--config", INIT_CONFIG)
    # ca, apiserver, apiserver-kubelet-client, front-proxy-ca/-client, sa, and when stacked etcd
    # ca/server/peer/healthcheck-client and apiserver-etcd-client (external etcd: kubeadm skips those five;
    # the apiserver reaching the external members with its baked client certificate proves that one)
    assert_reused(certs, "certs", 11 if stacked else 6, allowed_warnings(baked))
    kubeconfigs = kubeadm(root, "init", "phase", "kubeconfig", "all", "--config", INIT_CONFIG)
    used = assert_reused(kubeconfigs, "kubeconfig", 5, allowed_warnings(baked))
    names = {line.rsplit("/", 1)[1].rstrip('"') for line in used}
    assert names == {
        "admin.conf",
        "super-admin.conf",
        "kubelet.conf",
        "controller-manager.conf",
        "scheduler.conf",
    }
    assert snapshot(root) == before


@pytest.mark.parametrize("baked", WITH_ETCD_MEMBERS, indirect=True)
def test_etcd_member_certs_and_static_pod_are_kubeadms(baked: Baked) -> None:
    for member in baked.role("etcd"):
        check_etcd_member(baked, member, extra_args=[])


def test_etcd_member_static_pod_keeps_kubeadms_flag_order_with_extra_args(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The user's extraArgs follow kubeadm's sorted defaults, in the user's order, a default overridden."""
    extra = [
        ("quota-backend-bytes", "8589934592"),
        ("auto-compaction-retention", "8"),
        ("snapshot-count", "5000"),
    ]
    value = "{" + ", ".join(f'"{k}": "{v}"' for k, v in extra) + "}"
    baked_ = bake_profile(
        "ha-external-etcd", tmp_path_factory.mktemp("real-etcd-args"), f"cluster.etcd.extraArgs={value}"
    )
    check_etcd_member(baked_, baked_.role("etcd")[0], extra_args=extra)


def guide_etcd_config(baked: Baked, member: Node, extra_args: list[tuple[str, str]]) -> dict[str, Any]:
    """The member's kubeadm config as kubeadm's "HA etcd cluster with kubeadm" guide writes it (v1beta4).

    Built from the bake's public manifest (names, addresses, version), not from the bake's code.
    """
    members = baked.role("etcd")

    def peer(n: Node) -> str:
        host = f"[{n.ip}]" if ":" in n.ip else n.ip
        return f"https://{host}:2380"

    args = [
        {"name": "initial-cluster", "value": ",".join(f"{n.name}={peer(n)}" for n in members)},
        {"name": "initial-cluster-state", "value": "new"},
        *({"name": k, "value": v} for k, v in extra_args),
    ]
    return {
        "init": {
            "apiVersion": "kubeadm.k8s.io/v1beta4",
            "kind": "InitConfiguration",
            "nodeRegistration": {"name": member.name},
            "localAPIEndpoint": {"advertiseAddress": member.ip},
        },
        "cluster": {
            "apiVersion": "kubeadm.k8s.io/v1beta4",
            "kind": "ClusterConfiguration",
            "kubernetesVersion": f"v{baked.manifest['kubernetesVersion']}",
            "etcd": {
                "local": {"serverCertSANs": [member.ip], "peerCertSANs": [member.ip], "extraArgs": args}
            },
        },
    }


def check_etcd_member(baked: Baked, member: Node, extra_args: list[tuple[str, str]]) -> None:
    root = baked.copy(member)
    baked_pod = root / "etc/kubernetes/manifests/etcd.yaml"
    ours = yaml.safe_load(baked_pod.read_bytes())
    baked_pod.unlink()  # kubeadm writes its own in its place
    config = guide_etcd_config(baked, member, extra_args)
    path = root / GUIDE_ETCD_CONFIG.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all([config["init"], config["cluster"]]))
    before = snapshot(root)
    for cert in ("etcd-server", "etcd-peer", "etcd-healthcheck-client"):
        proc = kubeadm(root, "init", "phase", "certs", cert, "--config", GUIDE_ETCD_CONFIG)
        assert_reused(proc, "certs", 1)
    assert snapshot(root) == before
    kubeadm(root, "init", "phase", "etcd", "local", "--config", GUIDE_ETCD_CONFIG)
    theirs = yaml.safe_load(baked_pod.read_bytes())
    assert theirs.pop("status") == {}  # kubeadm's marshaller writes the empty PodStatus
    assert ours["spec"]["containers"][0]["command"] == theirs["spec"]["containers"][0]["command"]
    assert ours == theirs


# --------------------------------------------------------------------------------------------------
# 3. a real etcd + kube-apiserver (+ controller-manager) from the static pod command lines


@dataclass
class Network:
    """One network namespace per host on one bridge, as the nodes would sit on one switch."""

    prefix: str
    hosts: dict[str, str] = field(default_factory=dict)  # host name -> namespace
    created: list[str] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.prefix}-sw"

    def add_host(self, host: str, addresses: list[tuple[str, int]]) -> str:
        """A host whose eth0 carries these addresses (the profile's node addresses, a VIP)."""
        index = len(self.hosts)
        ns = f"{self.prefix}-{index}"
        run(["ip", "netns", "add", ns])
        self.created.append(ns)
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        port = f"p{index}"
        run(
            [
                "ip",
                "-n",
                self.switch,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
            ]
        )
        run(["ip", "-n", self.switch, "link", "set", port, "master", "br0", "up"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        for ip, prefix_length in addresses:
            nodad = ["nodad"] if ":" in ip else []
            run(["ip", "-n", ns, "addr", "add", f"{ip}/{prefix_length}", "dev", "eth0", *nodad])
        self.hosts[host] = ns
        return ns


@contextlib.contextmanager
def network(label: str) -> Iterator[Network]:
    net = Network(f"bk{os.getpid()}{label[:6]}")
    try:
        run(["ip", "netns", "add", net.switch])
        net.created.append(net.switch)
        run(["ip", "-n", net.switch, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", net.switch, "link", "set", "br0", "up"])
        yield net
    finally:
        for ns in reversed(net.created):
            subprocess.run(["ip", "netns", "delete", ns], check=False, capture_output=True)


@dataclass
class Processes:
    logs: Path
    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, netns: str, argv: list[str]) -> None:
        with (self.logs / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", netns, *argv],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.started.append((name, proc))

    def check_alive(self) -> None:
        dead = [(n, p.returncode) for n, p in self.started if p.poll() is not None]
        assert not dead, f"exited: {dead}\n{self.tails()}"

    def tails(self) -> str:
        out = []
        for name, _ in self.started:
            text = (self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
            out.append(f"--- {name}\n" + "\n".join(text))
        return "\n".join(out)

    def stop(self) -> None:
        for _, proc in reversed(self.started):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 3  # nothing here needs a graceful shutdown
        for _, proc in reversed(self.started):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)


def host_command(manifest: Path, root: Path) -> list[str]:
    """The pod's container command with every path mapped through its hostPath volumes into root.

    This is what the container runtime would show the process; a path no volume covers would not
    exist in the container, so it fails here too. DirectoryOrCreate volumes are created.
    """
    pod = yaml.safe_load(manifest.read_bytes())
    (container,) = pod["spec"]["containers"]
    volumes = {v["name"]: v["hostPath"] for v in pod["spec"]["volumes"]}
    mounts = []
    for m in container.get("volumeMounts", []):
        host = volumes[m["name"]]
        if host.get("type") == "DirectoryOrCreate":
            (root / host["path"].lstrip("/")).mkdir(parents=True, exist_ok=True)
        mounts.append((m["mountPath"].rstrip("/"), host["path"]))
    mounts.sort(key=lambda m: len(m[0]), reverse=True)

    def mapped(value: str) -> str:
        if not value.startswith("/"):
            return value
        for mount, host in mounts:
            if value == mount or value.startswith(mount + "/"):
                return str(root / host.lstrip("/")) + value[len(mount) :]
        raise AssertionError(f"{manifest.name}: {value} is outside every volume of the pod")

    command = [*container["command"], *container.get("args", [])]
    out = [tool(command[0])]
    for arg in command[1:]:
        name, eq, value = arg.partition("=")
        out.append(f"{name}={','.join(mapped(v) for v in value.split(','))}" if eq else arg)
    return out


HTTPS_GET = """
import json, ssl, sys, urllib.request
url, ca, cert, key, body = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=ca)
if cert:
    ctx.load_cert_chain(cert, key)
data = body.encode() if body else None
try:
    with urllib.request.urlopen(urllib.request.Request(url, data=data), context=ctx, timeout=5) as r:
        print(json.dumps({"status": r.status, "body": r.read().decode()}))
except Exception as e:
    print(json.dumps({"status": 0, "body": repr(e)}))
"""


def https(
    netns: str, url: str, ca: Path, cert: Path | None = None, key: Path | None = None, body: str = ""
) -> tuple[int, str]:
    """HTTPS from inside the namespace, verifying the server against ca (and its address SAN)."""
    proc = run(
        [sys.executable, "-c", HTTPS_GET, url, str(ca), str(cert or ""), str(key or ""), body],
        netns=netns, timeout=30,
    )  # fmt: skip
    result = json.loads(proc.stdout)
    return int(result["status"]), str(result["body"])


def wait_for(
    what: str, ok: Callable[[], bool], procs: Processes, timeout: float = UP_TIMEOUT, times: int = 1
) -> None:
    """Poll until ok() holds `times` times in a row; fail with the process logs otherwise."""
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline:
        procs.check_alive()
        streak = streak + 1 if ok() else 0
        if streak >= times:
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{procs.tails()}")


def wait_etcd_healthy(operator: str, member: Node, pki: Path, procs: Processes) -> None:
    """Until the member answers /health with its baked healthcheck-client certificate."""

    def healthy() -> bool:
        status, body = https(
            operator, url(member.ip, 2379, "/health"), pki / "ca.crt",
            pki / "healthcheck-client.crt", pki / "healthcheck-client.key",
        )  # fmt: skip
        return status == 200 and json.loads(body).get("health") == "true"

    wait_for(f"etcd member {member.name}", healthy, procs)


def url(host: str, port: int, path: str) -> str:
    return f"https://{f'[{host}]' if ':' in host else host}:{port}{path}"


OPERATOR = "operator"  # the operator's machine: the profile's gateway address


@dataclass
class Cluster:
    baked: Baked
    net: Network
    procs: Processes
    init_root: Path | None
    etcd_roots: dict[str, Path]

    def ns(self, host: str) -> str:
        return self.net.hosts[host]

    def kubectl(self, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
        """kubectl from the operator's machine."""
        return run([tool("kubectl"), "--kubeconfig", str(kubeconfig), *args], netns=self.ns(OPERATOR))


@pytest.fixture(scope="module")
def cluster(baked: Baked, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The profile's etcd members and first control plane, running; stopped and removed afterwards.

    Every node of the profile gets its own namespace with its baked address (joining control planes
    and workers run only kubeadm commands), the first control plane also holds the VIP, as kube-vip
    or keepalived would; the operator's machine holds the gateway address.
    """
    logs = tmp_path_factory.mktemp(f"logs-{baked.profile}")
    plan = PLANS[baked.profile.partition("+")[0]]
    with contextlib.ExitStack() as stack:
        # network namespace names are short: a variant gets a stable digest of its parameter
        label = baked.profile if "+" not in baked.profile else f"v{zlib.crc32(baked.profile.encode()):08x}"
        net = stack.enter_context(network(label))
        procs = Processes(logs)
        stack.callback(procs.stop)
        init = baked.init_node.name if plan.control_planes else None
        vip = plan.settings.load_balancer.vip
        for node in plan.nodes:
            addresses = [(str(node.ip), node.prefix_length)]
            if node.name == init and vip is not None:
                addresses.append((str(vip), 32 if vip.version == 4 else 128))
            net.add_host(node.name, addresses)
        gateway = plan.nodes[0].gateway
        assert gateway is not None
        operator = net.add_host(OPERATOR, [(str(gateway), plan.nodes[0].prefix_length)])

        etcd_roots = {}
        for member in baked.role("etcd"):  # the bake's own static pod, all members at once
            root = etcd_roots[member.name] = baked.copy(member, "run")
            command = host_command(root / "etc/kubernetes/manifests/etcd.yaml", root)
            procs.start(f"etcd-{member.name}", net.hosts[member.name], command)
        for member in baked.role("etcd"):
            wait_etcd_healthy(operator, member, etcd_roots[member.name] / "etc/kubernetes/pki/etcd", procs)

        init_root = None
        if init is not None:
            node = baked.init_node
            ns = net.hosts[init]
            init_root = baked.copy(node, "run")
            manifests = init_root / "etc/kubernetes/manifests"
            components = ["kube-apiserver", "kube-controller-manager"]
            if baked.manifest["topology"] == "stacked":
                kubeadm(init_root, "init", "phase", "etcd", "local", "--config", INIT_CONFIG)
                components.insert(0, "etcd")
            for component in ("apiserver", "controller-manager"):
                kubeadm(init_root, "init", "phase", "control-plane", component, "--config", INIT_CONFIG)
            for component in components:
                procs.start(component, ns, host_command(manifests / f"{component}.yaml", init_root))
            ca = init_root / "etc/kubernetes/pki/ca.crt"

            def ready(host: str, port: int) -> Callable[[], bool]:
                return lambda: https(operator, url(host, port, "/readyz"), ca)[0] == 200

            wait_for(f"kube-apiserver on {node.ip}", ready(node.ip, 6443), procs)
            if plan.settings.load_balancer.kind is LoadBalancerKind.HAPROXY_KEEPALIVED:
                procs.start(
                    "haproxy", ns, ["haproxy", "-db", "-f", str(init_root / "etc/haproxy/haproxy.cfg")]
                )
            endpoint = plan.api_endpoint()
            # several in a row: haproxy round-robins to control planes that are down until its checks see it
            wait_for(
                f"the endpoint {endpoint.hostport}", ready(str(endpoint.host), endpoint.port), procs, times=5
            )
            # what `kubeadm init` does next on the first control plane: bind kubeadm:cluster-admins (through
            # super-admin.conf), upload the configs, create the bootstrap token and cluster-info, and the
            # kube-proxy config a joining node reads
            for phase in (["upload-config", "all"], ["bootstrap-token"], ["addon", "kube-proxy"]):
                kubeadm(init_root, "init", "phase", *phase, "--config", INIT_CONFIG, netns=ns)
            admin = init_root / "etc/kubernetes/admin.conf"
            token_id = baked_token(baked).split(".")[0]

            def signed() -> bool:
                """kube-controller-manager's bootstrapsigner has signed cluster-info with the token."""
                proc = run(
                    [tool("kubectl"), "--kubeconfig", str(admin), "-n", "kube-public", "get", "configmap",
                     "cluster-info", "-o", "json"], netns=ns, check=False,
                )  # fmt: skip
                data = json.loads(proc.stdout)["data"] if proc.returncode == 0 else {}
                return f"jws-kubeconfig-{token_id}" in data

            if baked.manifest["join"] == "token":
                wait_for("the cluster-info JWS signature", signed, procs)
        yield Cluster(baked, net, procs, init_root, etcd_roots)


def baked_token(baked: Baked) -> str:
    return (baked.secrets / "token").read_text().strip()


@pytest.mark.parametrize("baked", WITH_ETCD_MEMBERS, indirect=True)
def test_baked_etcd_static_pods_form_one_cluster(cluster: Cluster) -> None:
    members = cluster.baked.role("etcd")
    pkis = {m.name: cluster.etcd_roots[m.name] / "etc/kubernetes/pki/etcd" for m in members}
    check_etcd_members(cluster.ns(OPERATOR), members, pkis)


def check_etcd_members(operator: str, members: list[Node], pkis: dict[str, Path]) -> None:
    """Each member lists every member with its peer URL (healthcheck-client certificate), and refuses a
    client without a certificate."""
    for member in members:
        pki = pkis[member.name]
        status, body = https(
            operator, url(member.ip, 2379, "/v3/cluster/member/list"), pki / "ca.crt",
            pki / "healthcheck-client.crt", pki / "healthcheck-client.key", body="{}",
        )  # fmt: skip
        assert status == 200, body
        listed = {m["name"]: m["peerURLs"] for m in json.loads(body)["members"]}
        assert listed == {m.name: [url(m.ip, 2380, "")] for m in members}
        # no client certificate, no answer
        status, body = https(operator, url(member.ip, 2379, "/health"), pki / "ca.crt")
        assert status == 0 and "certificate" in body.lower(), body


@pytest.mark.parametrize("baked", WITH_CONTROL_PLANE, indirect=True)
def test_kubectl_with_the_operator_admin_conf(cluster: Cluster) -> None:
    admin = cluster.baked.tree / "admin.conf"
    server = yaml.safe_load(admin.read_bytes())["clusters"][0]["cluster"]["server"]
    endpoint = PLANS[cluster.baked.profile.partition("+")[0]].api_endpoint()
    assert server == url(str(endpoint.host), endpoint.port, "")  # through the endpoint, no --server override
    whoami = json.loads(cluster.kubectl(admin, "auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == "kubernetes-admin"
    assert "kubeadm:cluster-admins" in whoami["status"]["userInfo"]["groups"]
    assert cluster.kubectl(admin, "auth", "can-i", "*", "*").stdout.strip() == "yes"
    names = cluster.kubectl(admin, "get", "namespaces", "-o", "name").stdout.split()
    assert "namespace/kube-system" in names
    config = cluster.kubectl(admin, "-n", "kube-system", "get", "configmap", "kubeadm-config", "-o", "json")
    uploaded = yaml.safe_load(json.loads(config.stdout)["data"]["ClusterConfiguration"])
    assert uploaded["clusterName"] == cluster.baked.manifest["cluster"]


def _flags(argv: list[str]) -> dict[str, str]:
    return {name: value for name, eq, value in (a.partition("=") for a in argv[1:]) if eq}


@pytest.mark.parametrize(
    "baked", [*WITH_CONTROL_PLANE, "single-node+cluster.secretsEncryption=aescbc"], indirect=True
)
def test_secrets_are_encrypted_in_etcd_from_the_first_boot(cluster: Cluster) -> None:
    """A Secret written through the API is stored encrypted in etcd (read with the real etcdctl and
    the apiserver's own etcd client certificate) and reads back in clear through the API."""
    baked, root = cluster.baked, cluster.init_root
    assert root is not None
    # the provider as the node's own EncryptionConfiguration names it
    config = yaml.safe_load((root / "etc/kubernetes/encryption/config.yaml").read_bytes())
    (provider, _), _ = (next(iter(p.items())) for p in config["resources"][0]["providers"])
    assert provider == ("aescbc" if "cluster.secretsEncryption=aescbc" in baked.sets else "secretbox")
    admin = baked.tree / "admin.conf"
    canary = "plain-text-canary-4f1d"
    cluster.kubectl(
        admin, "-n", "default", "create", "secret", "generic", "at-rest", f"--from-literal=p={canary}"
    )
    # where and how the running apiserver talks to etcd: its own command line, paths mapped as it sees them
    flags = _flags(host_command(root / "etc/kubernetes/manifests/kube-apiserver.yaml", root))
    assert flags["--encryption-provider-config"].endswith("etc/kubernetes/encryption/config.yaml")
    got = run(
        [tool("etcdctl"), f"--endpoints={flags['--etcd-servers']}", f"--cacert={flags['--etcd-cafile']}",
         f"--cert={flags['--etcd-certfile']}", f"--key={flags['--etcd-keyfile']}", "-w", "json",
         "get", "/registry/secrets/default/at-rest"],
        netns=cluster.ns(baked.init_node.name),
    )  # fmt: skip
    (kv,) = json.loads(got.stdout)["kvs"]
    stored = base64.b64decode(kv["value"])
    assert stored.startswith(f"k8s:enc:{provider}:v1:bake-1:".encode()), stored[:40]
    assert canary.encode() not in stored and base64.b64encode(canary.encode()) not in stored
    back = cluster.kubectl(admin, "-n", "default", "get", "secret", "at-rest", "-o", "jsonpath={.data.p}")
    assert base64.b64decode(back.stdout) == canary.encode()


@pytest.mark.parametrize("baked", WITH_JOINING_CONTROL_PLANES, indirect=True)
def test_joining_control_planes_reuse_every_baked_file(cluster: Cluster) -> None:
    stacked = cluster.baked.manifest["topology"] == "stacked"
    allowed = allowed_warnings(cluster.baked)
    joining = [n for n in cluster.baked.role("control-plane") if n.name != cluster.baked.init_node.name]
    assert joining
    for node in joining:
        root = cluster.baked.copy(node)
        before = snapshot(root)
        phase = ["join", "phase", "control-plane-prepare"]
        ns = cluster.ns(node.name)
        certs = kubeadm(root, *phase, "certs", "--config", JOIN_CONFIG, netns=ns)
        # join checks the leaves and sa (the CAs are checked by preflight, see below): apiserver,
        # apiserver-kubelet-client, front-proxy-client, sa, and when stacked apiserver-etcd-client and
        # etcd server/peer/healthcheck-client
        assert_reused(certs, "certs", 8 if stacked else 4, allowed)
        kubeconfigs = kubeadm(root, *phase, "kubeconfig", "--config", JOIN_CONFIG, netns=ns)
        used = assert_reused(kubeconfigs, "kubeconfig", 3, allowed)
        names = {line.rsplit("/", 1)[1].rstrip('"') for line in used}
        assert names == {"admin.conf", "controller-manager.conf", "scheduler.conf"}
        assert snapshot(root) == before


@pytest.mark.parametrize("baked", WITH_JOINING_CONTROL_PLANES, indirect=True)
def test_joining_control_planes_pass_kubeadms_preflight(cluster: Cluster) -> None:
    """No certificateKey: kubeadm finds the shared CA / SA keys on disk (SharedCertificateExists), and
    the node's files trip no FileAvailable / DirAvailable check beyond the one the baked config
    ignores itself."""
    for node in cluster.baked.role("control-plane"):
        if node.name == cluster.baked.init_node.name:
            continue
        root = cluster.baked.copy(node)
        proc, ignored = join_preflight(root, cluster.ns(node.name))
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{node.name} (ignoring {ignored}):\n{output}"
        assert "Running pre-flight checks before initializing the new control plane instance" in output
        assert "assuming external key" not in output  # every shared CA key is on disk (no external CA)
        assert not re.search(r"WARNING (File|Dir)Available--(?!etc-kubernetes-manifests\])", output), output


def join_preflight(root: Path, netns: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`kubeadm join phase preflight` with the baked join config: discovery, then kubeadm's checks.

    This host has no kubelet, container runtime or the node's tools, so the checks about those are
    ignored by name as kubeadm reports them; a check about the node's files (FileAvailable--*,
    DirAvailable--*) is never ignored. Returns the last run and the checks it ignored.
    """
    ignored: list[str] = []
    for _ in range(4):  # node checks, then (control planes) init checks, then image pulls
        flags = [f"--ignore-preflight-errors={','.join(ignored)}"] if ignored else []
        proc = kubeadm(
            root,
            "join",
            "phase",
            "preflight",
            "--config",
            JOIN_CONFIG,
            *flags,
            "-v=1",
            netns=netns,
            check=False,
        )
        failed = re.findall(r"\[ERROR ([^\]]+)\]", proc.stdout + proc.stderr)
        host_only = [c for c in failed if not re.match(r"(File|Dir)Available--", c) and c not in ignored]
        if proc.returncode == 0 or not host_only or len(host_only) < len(failed):
            return proc, ignored
        ignored += host_only
    return proc, ignored


def worker_discovery(cluster: Cluster, ca_hash: str | None = None) -> subprocess.CompletedProcess[str]:
    worker = cluster.baked.role("worker")[0]
    root = cluster.baked.copy(worker)
    config_path = root / JOIN_CONFIG.lstrip("/")
    if ca_hash is not None:
        docs = yaml.safe_load(config_path.read_bytes())
        docs["discovery"]["bootstrapToken"]["caCertHashes"] = [ca_hash]
        config_path.write_text(yaml.safe_dump(docs))
    proc, _ = join_preflight(root, cluster.ns(worker.name))
    return proc


# one token-mode cluster: the certificate mode is the default
TOKEN_MODE = ["single-master+cluster.join=token"]


@pytest.mark.parametrize("baked", TOKEN_MODE, indirect=True)
def test_worker_discovery_with_the_baked_token_and_ca_hash(cluster: Cluster) -> None:
    proc = worker_discovery(cluster)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    endpoint = PLANS[cluster.baked.profile.partition("+")[0]].api_endpoint().hostport
    assert "TLS certificate validates against pinned roots" in proc.stderr, proc.stderr
    assert f'will use API Server "{endpoint}"' in proc.stderr, proc.stderr


@pytest.mark.parametrize("baked", TOKEN_MODE, indirect=True)
def test_worker_discovery_refuses_another_ca_hash(cluster: Cluster) -> None:
    baked_hash = cluster.baked.manifest["discoveryTokenCaCertHash"]
    wrong = "sha256:" + hashlib.sha256(baked_hash.encode()).hexdigest()
    proc = worker_discovery(cluster, wrong)
    assert proc.returncode != 0
    assert "are pinned" in proc.stderr, proc.stderr
    assert "validates against pinned roots" not in proc.stderr


@pytest.mark.parametrize("baked", TOKEN_MODE, indirect=True)
def test_token_is_created_again_from_the_baked_init_config(cluster: Cluster) -> None:
    """cluster.join: token: once the token is gone (expired and removed), the first control plane's
    `kubeadm token create --config <its baked InitConfiguration>` (what bake-bootstrap join-token runs)
    brings back the bundle's token with the profile's TTL, and a worker discovers the cluster again."""
    assert cluster.init_root is not None
    admin = cluster.baked.tree / "admin.conf"
    token = baked_token(cluster.baked)
    token_id, secret_part = token.split(".")
    cluster.kubectl(admin, "-n", "kube-system", "delete", "secret", f"bootstrap-token-{token_id}")
    init = cluster.ns(cluster.baked.init_node.name)
    created = kubeadm(cluster.init_root, "token", "create", "--config", INIT_CONFIG, netns=init)
    assert created.stdout.strip() == token
    before = datetime.now(UTC)
    secret = json.loads(
        cluster.kubectl(
            admin, "-n", "kube-system", "get", "secret", f"bootstrap-token-{token_id}", "-o", "json"
        ).stdout
    )
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["token-secret"] == secret_part and data["usage-bootstrap-authentication"] == "true"
    expires = datetime.strptime(data["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(expires - (before + timedelta(hours=24))) < timedelta(minutes=5)  # tokenTTL: 24h

    def signed() -> bool:
        proc = cluster.kubectl(admin, "-n", "kube-public", "get", "configmap", "cluster-info", "-o", "json")
        return f"jws-kubeconfig-{token_id}" in json.loads(proc.stdout)["data"]

    wait_for("the cluster-info JWS signature of the new token", signed, cluster.procs)
    proc = worker_discovery(cluster)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------------------------------
# join credentials (cluster.join: certificate, the default): each node joins as itself, no token at all

JOIN_CONF = "etc/bake/join.conf"


def bootstrap_tokens(cluster: Cluster) -> list[str]:
    admin = cluster.baked.tree / "admin.conf"
    proc = cluster.kubectl(
        admin, "-n", "kube-system", "get", "secrets", "--field-selector",
        "type=bootstrap.kubernetes.io/token", "-o", "name",
    )  # fmt: skip
    return proc.stdout.split()


def kubeconfig_with(conf: Path, dest: Path, *, token: str | None = None, cert: bytes | None = None,
                    key: bytes | None = None) -> Path:  # fmt: skip
    """conf's cluster (server, pinned CA) with other credentials: a token, or a certificate and key."""
    doc = yaml.safe_load(conf.read_bytes())
    user: dict[str, str] = {}
    if token is not None:
        user["token"] = token
    if cert is not None and key is not None:
        user["client-certificate-data"] = base64.b64encode(cert).decode()
        user["client-key-data"] = base64.b64encode(key).decode()
    doc["users"] = [{"name": "someone", "user": user}]
    doc["contexts"][0]["context"]["user"] = "someone"
    dest.write_text(yaml.safe_dump(doc))
    return dest


def whoami(conf: Path, netns: str) -> subprocess.CompletedProcess[str]:
    return run([tool("kubectl"), "--kubeconfig", str(conf), "auth", "whoami", "-o", "json"], netns=netns,
               check=False)  # fmt: skip


@pytest.mark.parametrize("baked", WITH_WORKERS, indirect=True)
def test_no_bootstrap_token_authenticates_in_certificate_mode(cluster: Cluster) -> None:
    """kubeadm init created the one token it insists on (the bundle's, TTL 1s): it is already useless."""
    token = baked_token(cluster.baked)
    time.sleep(1.5)  # past the TTL even if this runs right after kubeadm's bootstrap-token phase
    worker = cluster.baked.role("worker")[0]
    conf = kubeconfig_with(worker.root / JOIN_CONF, cluster.baked.scratch / "token.conf", token=token)
    proc = whoami(conf, cluster.ns(worker.name))
    assert proc.returncode != 0 and "Unauthorized" in proc.stderr, proc.stdout + proc.stderr


@pytest.mark.parametrize("baked", WITH_WORKERS, indirect=True)
def test_worker_joins_with_its_own_credential_after_the_token_is_deleted(cluster: Cluster) -> None:
    """The per-node credential works with no bootstrap token in the cluster: it is system:node:<name>,
    kubeadm's file discovery accepts it and reads the cluster's configuration with it, and the real
    kubelet's TLS bootstrap with it gets a CSR that kube-controller-manager approves by itself."""
    admin = cluster.baked.tree / "admin.conf"
    for name in bootstrap_tokens(cluster):
        # the token kubeadm init insists on is inert (TTL 1s): kube-controller-manager's token cleaner
        # may delete it between the listing and this
        cluster.kubectl(admin, "-n", "kube-system", "delete", "--ignore-not-found", name)
    assert bootstrap_tokens(cluster) == []
    for worker in cluster.baked.role("worker"):
        ns = cluster.ns(worker.name)
        proc = whoami(worker.root / JOIN_CONF, ns)
        assert proc.returncode == 0, proc.stderr
        info = json.loads(proc.stdout)["status"]["userInfo"]
        assert info["username"] == f"system:node:{worker.name}"
        assert "system:nodes" in info["groups"]
    worker = cluster.baked.role("worker")[0]
    ns = cluster.ns(worker.name)
    root = cluster.baked.copy(worker)
    # kubeadm join's kubelet-start phase: discovery through the file, then (as system:node:<name>) the
    # kubeadm-config and kubelet-config ConfigMaps and the Node; no init system here, so no kubelet start
    proc = kubeadm(root, "join", "phase", "kubelet-start", "--config", JOIN_CONFIG, "-v=1", netns=ns)
    assert "Using authentication credentials from the discovery file" in proc.stderr, proc.stderr
    config = yaml.safe_load((root / "var/lib/kubelet/config.yaml").read_bytes())
    assert config["kind"] == "KubeletConfiguration"  # downloaded from kube-system/kubelet-config
    boot = root / "etc/kubernetes/bootstrap-kubelet.conf"
    baked_user = yaml.safe_load((worker.root / JOIN_CONF).read_bytes())["users"][0]["user"]
    assert yaml.safe_load(boot.read_bytes())["users"][0]["user"] == baked_user
    assert (root / "etc/kubernetes/pki/ca.crt").read_bytes() == (
        base64.b64decode(
            yaml.safe_load(boot.read_bytes())["clusters"][0]["cluster"]["certificate-authority-data"]
        )
    )
    # the real kubelet's TLS bootstrap with that file: it needs no container runtime for this part. Its
    # configuration is the one kubeadm downloaded, with the host checks this machine would fail turned off,
    # the node's paths mapped into its copy, and the bootstrap done in the foreground (no rotation) so
    # that it happens before the kubelet looks for a container runtime.
    kubelet_dir = cluster.baked.scratch / f"kubelet-{worker.name}"
    kubelet_dir.mkdir()
    config.update(failCgroupV1=False, failSwapOn=False, rotateCertificates=False)
    config["staticPodPath"] = str(kubelet_dir / "manifests")
    config["authentication"]["x509"]["clientCAFile"] = str(root / "etc/kubernetes/pki/ca.crt")
    (kubelet_dir / "config.yaml").write_text(yaml.safe_dump(config))
    kubelet = Processes(kubelet_dir)
    kubelet.start(
        "kubelet", ns,
        [tool("kubelet"), f"--config={kubelet_dir}/config.yaml", f"--bootstrap-kubeconfig={boot}",
         f"--kubeconfig={kubelet_dir}/kubelet.conf", f"--cert-dir={kubelet_dir}/pki",
         f"--root-dir={kubelet_dir}/root", f"--hostname-override={worker.name}", "--v=2"],
    )  # fmt: skip
    try:
        csr = wait_for_approved_csr(cluster, worker.name, kubelet)
    finally:
        kubelet.stop()
    assert csr["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
    (condition,) = [c for c in csr["status"]["conditions"] if c["type"] == "Approved"]
    assert condition["reason"] == "AutoApproved"
    assert "self" in condition["message"]  # kubeadm's selfnodeclient binding, not the token's nodeclient
    issued = x509.load_pem_x509_certificate(base64.b64decode(csr["status"]["certificate"]))
    assert issued.subject.rfc4514_string() == f"CN=system:node:{worker.name},O=system:nodes"
    ca = x509.load_pem_x509_certificate((cluster.baked.secrets / "pki/ca.crt").read_bytes())
    issued.verify_directly_issued_by(ca)


def wait_for_approved_csr(cluster: Cluster, node: str, kubelet: Processes) -> dict[str, Any]:
    """The kubelet's CSR from system:node:<node>, once approved and signed (60 s at most)."""
    admin = cluster.baked.tree / "admin.conf"

    def approved() -> dict[str, Any] | None:
        proc = cluster.kubectl(admin, "get", "csr", "-o", "json")
        for csr in json.loads(proc.stdout)["items"]:
            status = csr.get("status", {})
            conditions = {c["type"] for c in status.get("conditions", [])}
            mine = csr["spec"]["username"] == f"system:node:{node}"
            if mine and "Approved" in conditions and status.get("certificate"):
                return dict(csr)
        return None

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        csr = approved()
        if csr is not None:
            return csr
        time.sleep(1)
    raise AssertionError(
        f"no approved CSR from system:node:{node}\n{kubelet.tails()}\n{cluster.procs.tails()}"
    )


@pytest.mark.parametrize("baked", WITH_WORKERS, indirect=True)
def test_a_credential_for_another_node_or_expired_is_refused(cluster: Cluster) -> None:
    admin = cluster.baked.tree / "admin.conf"
    w1 = cluster.baked.role("worker")[0]
    # another joining node (a worker, or a joining control plane where the profile has one worker)
    w2 = next(n for n in cluster.baked.nodes.values() if n.name != w1.name and (n.root / JOIN_CONF).is_file())
    secrets = cluster.baked.secrets
    ca_cert = pki.load_cert((secrets / "pki/ca.crt").read_bytes())
    ca_key = pki.load_key((secrets / "pki/ca.key").read_bytes())
    # expired: the node's own identity and key, signed by the cluster CA, past its window
    key = pki.load_key((secrets / f"nodes/{w1.name}/kubeconfig/join.key").read_bytes())
    old = pki.sign(
        certlist.join_client(w1.name), key.public_key(), ca_cert, ca_key,
        now=datetime.now(UTC) - timedelta(days=40), validity=timedelta(days=30),
    )  # fmt: skip
    expired = kubeconfig_with(
        w1.root / JOIN_CONF,
        cluster.baked.scratch / "expired.conf",
        cert=pki.cert_pem(old),
        key=pki.key_pem(key),
    )
    proc = whoami(expired, cluster.ns(w1.name))
    assert proc.returncode != 0 and "Unauthorized" in proc.stderr, proc.stdout + proc.stderr
    root = cluster.baked.copy(w1)
    shutil.copy(expired, root / JOIN_CONF)
    join_config = root / JOIN_CONFIG.lstrip("/")
    doc = yaml.safe_load(join_config.read_bytes())
    doc["timeouts"]["discovery"] = "10s"  # kubeadm retries until then; the answer will not change
    join_config.write_text(yaml.safe_dump(doc))
    proc = kubeadm(
        root,
        "join",
        "phase",
        "kubelet-start",
        "--config",
        JOIN_CONFIG,
        netns=cluster.ns(w1.name),
        check=False,
    )
    assert proc.returncode != 0 and "Unauthorized" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert not (root / "etc/kubernetes/bootstrap-kubelet.conf").exists()
    # another node's credential asking for this node's kubelet certificate
    csr_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{w1.name}"),
        ]
    )
    request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(csr_key, hashes.SHA256())
    manifest = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": f"impostor-{w1.name}"},
        "spec": {
            "request": base64.b64encode(request.public_bytes(serialization.Encoding.PEM)).decode(),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"],
        },
    }
    path = cluster.baked.scratch / "impostor.yaml"
    path.write_text(yaml.safe_dump(manifest))
    create = [tool("kubectl"), "--kubeconfig", str(w2.root / JOIN_CONF), "create", "-f", str(path)]
    proc = run(create, netns=cluster.ns(w2.name), check=False)
    # kube-apiserver's NodeRestriction admission: a node may only ask for its own kubelet certificate
    assert proc.returncode != 0 and "Forbidden" in proc.stderr, proc.stdout + proc.stderr
    assert f"can only create a node CSR with CN=system:node:{w2.name}" in proc.stderr
    listed = cluster.kubectl(admin, "get", "csr", "-o", "name").stdout.split()
    assert f"certificatesigningrequest.certificates.k8s.io/impostor-{w1.name}" not in listed


# --------------------------------------------------------------------------------------------------
# 4. the versions table row of the built minor, against the built kubeadm


@functools.cache
def kubeadm_version() -> str:
    return run([tool("kubeadm"), "version", "-o", "short"]).stdout.strip()


@pytest.fixture(scope="module")
def built() -> tuple[str, versions.MinorInfo]:
    return kubeadm_version(), versions.lookup(kubeadm_version())


def validate(tmp_path: Path, *docs: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """`kubeadm config validate`; a ClusterConfiguration gets a kubernetesVersion so that kubeadm does
    not ask dl.k8s.io for one."""
    pinned = [
        {"kubernetesVersion": kubeadm_version(), **d} if d.get("kind") == "ClusterConfiguration" else d
        for d in docs
    ]
    path = tmp_path / f"config-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump_all(pinned))
    proc = run([tool("kubeadm"), "config", "validate", "--config", str(path)], check=False)
    assert "dl.k8s.io" not in proc.stderr, proc.stderr
    return proc


def test_default_patch_is_the_built_release(built: tuple[str, versions.MinorInfo]) -> None:
    version, info = built
    assert f"v{info.default_patch}" == version


def test_image_tags_are_kubeadms(built: tuple[str, versions.MinorInfo]) -> None:
    _, info = built
    images = run(
        [tool("kubeadm"), "config", "images", "list", "--kubernetes-version", f"v{info.default_patch}"]
    ).stdout.split()
    assert f"registry.k8s.io/etcd:{info.etcd_tag}" in images
    assert f"registry.k8s.io/pause:{info.pause_tag}" in images
    assert f"registry.k8s.io/coredns/coredns:{info.coredns_tag}" in images


def kubeadm_gates() -> dict[str, str]:
    """The feature gates the built kubeadm knows, with their state, from `kubeadm init --help`."""
    help_text = run([tool("kubeadm"), "init", "--help"]).stdout
    known = dict(re.findall(r"(\w+)=true\|false \((?:(ALPHA|BETA|DEPRECATED) - )?default=", help_text))
    assert known, help_text
    state_of = {
        "ALPHA": versions.ALPHA,
        "BETA": versions.BETA,
        "DEPRECATED": versions.DEPRECATED,
        "": versions.GA,
    }
    return {name: state_of[s] for name, s in known.items()}


def test_feature_gates_are_kubeadms(built: tuple[str, versions.MinorInfo]) -> None:
    """Every gate kubeadm knows is in the row with its state, and every other gate is removed/absent."""
    _, info = built
    assert kubeadm_gates() == {
        name: state for name, state in info.feature_gates if state not in (versions.REMOVED, versions.ABSENT)
    }


def test_bake_and_kubeadm_agree_on_feature_gates(
    built: tuple[str, versions.MinorInfo], tmp_path: Path
) -> None:
    """A gate the bake accepts, kubeadm accepts in the baked config; one the bake refuses, kubeadm refuses."""
    _, info = built
    names = {n for n, _ in info.feature_gates} | set(kubeadm_gates()) | {"NoSuchGate"}
    cluster = {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration"}
    for name in sorted(names):
        sets = (f"cluster.kubernetesVersion={info.default_patch}", f"cluster.featureGates={{{name}: true}}")
        try:
            doc: dict[str, Any] | None = kubeadm_config.cluster_configuration(
                build_plan(load_profile("single-node", sets))
            )
        except BakeError:
            doc = None
        accepted = validate(tmp_path, {**cluster, "featureGates": {name: True}})
        assert (doc is not None) is (accepted.returncode == 0), f"{name}: {accepted.stdout}{accepted.stderr}"
        if doc is not None:
            assert validate(tmp_path, doc).returncode == 0, name


def test_api_versions_and_fields_are_kubeadms(built: tuple[str, versions.MinorInfo], tmp_path: Path) -> None:
    _, info = built
    cluster = {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration"}
    assert validate(tmp_path, cluster).returncode == 0
    v1beta3 = validate(tmp_path, {**cluster, "apiVersion": "kubeadm.k8s.io/v1beta3"})
    assert (v1beta3.returncode == 0) is info.v1beta3_accepted, v1beta3.stderr
    p384 = validate(tmp_path, {**cluster, "encryptionAlgorithm": "ECDSA-P384"})
    assert (p384.returncode == 0) is info.ecdsa_p384, p384.stderr
    external = {"endpoints": ["https://10.0.0.1:2379"], "caFile": "/c", "certFile": "/d", "keyFile": "/e"}
    http = validate(
        tmp_path, {**cluster, "etcd": {"external": {**external, "httpEndpoints": ["http://10.0.0.1:2382"]}}}
    )
    strict_ok = http.returncode == 0 and "unknown field" not in http.stderr
    assert strict_ok is info.etcd_external_http_endpoints, http.stderr


@pytest.mark.parametrize("baked", ["single-master"], indirect=True)
def test_kubelet_flags_are_kubeadms(baked: Baked, built: tuple[str, versions.MinorInfo]) -> None:
    """kubeadm-flags.env as kubeadm writes it: the pause-image flag and the CRI socket per the row."""
    _, info = built
    root = baked.copy(baked.init_node)
    kubeadm(root, "init", "phase", "kubelet-start", "--config", INIT_CONFIG)
    flags = (root / "var/lib/kubelet/kubeadm-flags.env").read_text()
    assert ("--pod-infra-container-image" in flags) is info.pod_infra_container_image_flag, flags
    assert ("--container-runtime-endpoint" not in flags) is info.node_local_cri_socket, flags
    instance = root / "var/lib/kubelet/instance-config.yaml"
    assert instance.is_file() is info.node_local_cri_socket
