"""Issue #5: what `bake` produces is what each node needs, proven on booted VMs.

Each test bakes a profile with the real CLI (packages prebaked, ECDSA-P256 keys for speed, Debian 12 nodes,
since the guest image is Debian 12), boots the seed ISOs in QEMU (TCG) on one private vde switch, at most four
VMs at a time at 1 vCPU / 1 GiB, and checks IN THE GUEST, per node, everything in nodecheck.py: cloud-init
clean, every baked file with its mode, owner and sha256 and nothing meant for another role, hostname and
address, modules, sysctls, swap, containerd, the kubelet unit, and the bootstrap stopped at its declared
test stop in front of the role's kubeadm / kubelet command, with every step in its log. Two runs cover
every role:

- `test_external_etcd_members_and_control_plane`: the three external etcd members of `ha-external-etcd`
  run their baked static pod for real and form a cluster; the external-etcd control plane reaches it with
  its own baked client certificate through the endpoints of its baked kubeadm config.
- `test_stacked_control_planes_and_workers`: the init control plane (stacked etcd, kube-vip), a joining
  control plane on arm64 (qemu-system-aarch64), and a worker that waits for its endpoint, gives up,
  reboots, retries and then reaches its stop.

kubeadm, kubelet and kube-apiserver are not packaged in Debian 12: nothing past the test stop runs, the
kubelet is a test double (tests/vm/guest/kubelet, kubelet.service), and the API endpoint the worker waits
for is answered by `openssl s_server` with the baked apiserver certificate, a TEST DOUBLE for the API server.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import expect, nodecheck
from .harness import VmResult, VmSpec, run_vms
from .image import GuestImage, repo_root

pytestmark = pytest.mark.vm

ETCD_PKI = "/etc/kubernetes/pki/etcd"
ETCDCTL = "ETCDCTL_API=3 etcdctl --dial-timeout=5s --command-timeout=15s"
RUN_TIMEOUT_S = 1800  # a bound for a hung run; a green run takes a fraction of it


def bake(out: Path, profile: str, *sets: str) -> tuple[dict[str, Any], dict[str, nodecheck.BakedNode]]:
    """The real CLI, as a user runs it; returns the manifest and the nodes read back from the tree."""
    argv = [
        sys.executable, "-m", "builder.cli", "--profile", profile, "--out", str(out),
        "--secrets", str(out.with_name(out.name + "-secrets")),  # the bundle apart, never the repository's
        "--set", "cluster.packages.mode=prebaked",
        "--set", "cluster.encryptionAlgorithm=ECDSA-P256",
        "--set", "defaults.os=debian-12",
        *(x for s in sets for x in ("--set", s)),
        "-q",
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=repo_root(), timeout=300, check=False)
    assert proc.returncode == 0, f"bake failed ({proc.returncode}): {proc.stdout}{proc.stderr}"
    [tree] = [p for p in out.iterdir() if p.is_symlink() or (p / "manifest.json").exists()]
    manifest, nodes = nodecheck.load_tree(tree)
    return manifest, {n.name: n for n in nodes}


def spec(node: nodecheck.BakedNode, checks: Sequence[dict[str, Any]], **kw: Any) -> VmSpec:
    return VmSpec(
        node.name,
        node.arch,
        node.seed_iso,
        node.mac,
        memory_mb=1024,
        cpus=1,
        expectations=expect.expectations(*checks),
        **kw,
    )


def assert_green(results: Sequence[VmResult], extra: Callable[[VmResult], list[str]] | None = None) -> None:
    """Every VM ok and cloud-init clean; on failure, every VM's explain() (failing checks, log tails)."""
    failures = []
    for r in results:
        problems = [] if r.ok else ["guest checks failed"]
        problems += [f for boot in r.results for f in nodecheck.cloud_init_findings(boot)]
        if extra is not None:
            problems += extra(r)
        if problems:
            failures.append(
                "\n".join([f"== {r.name}: " + "; ".join(problems[:1]), *problems[1:], r.explain()])
            )
    timing = ", ".join(f"{r.name} {'/'.join(f'{t:.0f}' for t in r.report_times_s)} s" for r in results)
    assert not failures, f"report times: {timing}\n" + "\n\n".join(failures)
    print(f"[vm] report times: {timing}", file=sys.stderr)


def etcd_flags(node: nodecheck.BakedNode) -> list[str]:
    pod = yaml.safe_load(node.file("/etc/kubernetes/manifests/etcd.yaml").content)
    command = pod["spec"]["containers"][0]["command"]
    assert command[0] == "etcd"
    return [arg.split("=", 1)[0] for arg in command[1:]]


# ---------------------------------------------------------------------------------------------------------
# external etcd: three members + the control plane that uses them


def etcd_member_checks(
    node: nodecheck.BakedNode, members: Sequence[nodecheck.BakedNode]
) -> list[dict[str, Any]]:
    """After the bootstrap's stop: run its recorded command, so kubelet.service (drop-in -> kubelet TEST
    DOUBLE -> kubelet-standin) starts the baked static pod with Debian's etcd 3.4 and the baked certs."""
    endpoints = ",".join(f"https://{m.ip}:2379" for m in members)
    client = f"{ETCD_PKI}/healthcheck-client"
    healthcheck = f"--cacert {ETCD_PKI}/ca.crt --cert {client}.crt --key {client}.key"
    own = f"--endpoints=https://{node.ip}:2379"
    checks = [
        expect.command(
            ["etcd", "--help"],
            contains=[f"{flag} " for flag in etcd_flags(node)],
            name="Debian's etcd accepts every flag of the baked etcd.yaml",
        ),
        expect.command(
            f'sh -ec "$(cat {nodecheck.STOPPED})"',
            name="run the command the bootstrap stopped in front of (restart kubelet)",
        ),
        expect.unit("kubelet.service", active=True, wait_s=30, name="kubelet (test double) running"),
        expect.tcp(2379, node.ip, wait_s=180, name=f"etcd listens on {node.ip}:2379"),
        expect.command(
            "journalctl -u kubelet.service -o cat --no-pager",
            contains=["kubelet TEST DOUBLE", "/etc/kubernetes/manifests/etcd.yaml", "exec /usr/bin/etcd "],
            name="etcd was started from the baked static pod through the kubelet drop-in",
        ),
        expect.command(
            f"{ETCDCTL} --endpoints={endpoints} {healthcheck} endpoint health",
            contains=[f"https://{m.ip}:2379 is healthy" for m in members],
            wait_s=300,
            timeout=60,
            name="etcdctl endpoint health (healthcheck-client cert) on every member",
        ),
        expect.command(
            f"{ETCDCTL} {own} {healthcheck} member list -w simple",
            contains=[f"started, {m.name}, https://{m.ip}:2380, https://{m.ip}:2379" for m in members],
            wait_s=60,
            name="three started members, named and addressed as baked",
        ),
        expect.command(
            f"{ETCDCTL} {own} {healthcheck} put /bake-vm/{node.name} written-on-{node.name}",
            contains="OK",
            wait_s=60,
            name=f"write /bake-vm/{node.name} on {node.name}",
        ),
    ]
    for other in members:
        if other.name != node.name:
            checks.append(
                expect.command(
                    f"{ETCDCTL} {own} {healthcheck} get --consistency=s --print-value-only "
                    f"/bake-vm/{other.name}",
                    contains=f"written-on-{other.name}",
                    wait_s=240,
                    name=f"read on {node.name} (local, serializable) what {other.name} wrote",
                )
            )
    curl = f"curl -sS --max-time 10 --cacert {ETCD_PKI}/ca.crt"
    checks += [
        # The refusals below differ from this positive control only in the client certificate.
        expect.command(
            f"{curl} --cert {client}.crt --key {client}.key https://{node.ip}:2379/health",
            contains='"health":"true"',
            wait_s=60,
            name="/health over mTLS with the baked healthcheck-client cert",
        ),
        expect.command(
            f"{curl} https://{node.ip}:2379/health; test $? -ne 0",
            not_contains='"health"',
            name="a TLS client without a certificate is refused",
        ),
        expect.command(
            f"{ETCDCTL} {own} --cacert {ETCD_PKI}/ca.crt endpoint health; test $? -ne 0",
            not_contains="is healthy",
            regex=r"(?i)(bad certificate|certificate required|unhealthy)",
            name="etcdctl without a certificate is refused",
        ),
        expect.file("/var/lib/etcd/member", type="dir", name="etcd data in the pod's hostPath /var/lib/etcd"),
    ]
    return checks


def external_control_plane_checks(cp: nodecheck.BakedNode) -> list[dict[str, Any]]:
    """The control plane's baked kubeadm config points at the etcd cluster, with files that it accepts."""
    docs = list(yaml.safe_load_all(cp.file("/run/kubeadm/kubeadm.yaml").content))
    [cluster] = [d for d in docs if d.get("kind") == "ClusterConfiguration"]
    ext = cluster["etcd"]["external"]
    tls = f"--cacert {ext['caFile']} --cert {ext['certFile']} --key {ext['keyFile']}"
    endpoints = ",".join(ext["endpoints"])
    cluster_ca_client = "/etc/kubernetes/pki/apiserver-kubelet-client"
    return [
        expect.command(
            f"{ETCDCTL} --endpoints={endpoints} {tls} endpoint health",
            contains=[f"{e} is healthy" for e in ext["endpoints"]],
            wait_s=600,
            timeout=60,
            name="the kubeadm config's etcd.external endpoints, CA and client cert reach a healthy cluster",
        ),
        expect.command(
            f"{ETCDCTL} --endpoints={endpoints} {tls} put /bake-vm/{cp.name} ok && "
            f"{ETCDCTL} --endpoints={endpoints} {tls} get --print-value-only /bake-vm/etcd-1",
            contains="written-on-etcd-1",
            wait_s=120,
            name="the control plane writes and reads through etcd.external",
        ),
        expect.command(
            f"curl -sS --max-time 10 --cacert {ext['caFile']} --cert {ext['certFile']} "
            f"--key {ext['keyFile']} {ext['endpoints'][0]}/health",
            contains='"health":"true"',
            wait_s=60,
            name="/health over mTLS with the baked apiserver-etcd-client cert",
        ),
        expect.command(
            f"curl -sS --max-time 10 --cacert {ext['caFile']} --cert {cluster_ca_client}.crt "
            f"--key {cluster_ca_client}.key {ext['endpoints'][0]}/health; test $? -ne 0",
            not_contains='"health"',
            name="etcd refuses a client certificate of the cluster CA (not the etcd CA)",
        ),
    ]


def test_external_etcd_members_and_control_plane(vm_image_amd64: GuestImage, tmp_path: Path) -> None:
    """ha-external-etcd at Kubernetes 1.33: etcd-1..3 (external etcd members) and cp-1 (control plane of an
    external etcd, the init node) boot together.

    1.33 because its kubeadm etcd flags (etcd 3.5: --experimental-initial-corrupt-check,
    --experimental-watch-progress-notify-interval) all exist in Debian 12's etcd 3.4.23, which the guest
    runs (checked against `etcd --help` in the guest); 1.34+ writes etcd 3.6 flags (--feature-gates,
    --watch-progress-notify-interval) that 3.4 rejects. No flag is dropped.
    """
    _, nodes = bake(tmp_path / "out", "ha-external-etcd", "cluster.kubernetesVersion=1.33")
    members = [nodes["etcd-1"], nodes["etcd-2"], nodes["etcd-3"]]
    cp = nodes["cp-1"]
    assert [m.bootstrap_role for m in members] == ["etcd"] * 3 and cp.bootstrap_role == "init"
    everyone = list(nodes.values())
    specs = [spec(m, nodecheck.node_checks(m, everyone) + etcd_member_checks(m, members)) for m in members]
    specs.append(spec(cp, nodecheck.node_checks(cp, everyone) + external_control_plane_checks(cp)))
    results = run_vms(specs, workdir=tmp_path / "run", timeout_s=RUN_TIMEOUT_S)
    assert_green(results)


# ---------------------------------------------------------------------------------------------------------
# stacked control planes and workers; the join order; a reboot; arm64

WAIT_S = 30  # the worker's endpoint wait bound, set through the test stop file (`wait-seconds=`)
BARRIER_PORT = 7777


def _dev_of(mac: str) -> str:
    return f"$(ip -o link show | awk -v m={mac} 'index(tolower($0), m) {{sub(/:$/, \"\", $2); print $2}}')"


def init_checks(cp: nodecheck.BakedNode, vip: str, port: int, worker: str) -> list[dict[str, Any]]:
    """Then, once the worker has given up on the endpoint, answer it: the VIP on cp-1 and a TEST DOUBLE of
    the API server (`openssl s_server` with the baked apiserver certificate) serving /readyz."""
    kube_vip = "/etc/kubernetes/manifests/kube-vip.yaml"
    www = "/run/bake-test/www"
    pki = "/etc/kubernetes/pki"
    return [
        expect.file(
            kube_vip,
            contains=["/etc/kubernetes/super-admin.conf", vip],
            name="kube-vip manifest as baked: still on super-admin.conf (switched only after kubeadm init)",
        ),
        expect.command(
            f"openssl verify -CAfile {pki}/ca.crt {pki}/apiserver.crt && "
            f"openssl x509 -in {pki}/apiserver.crt -noout -ext subjectAltName",
            contains=[f"IP Address:{vip}", f"IP Address:{cp.ip}"],
            name="baked apiserver certificate: signed by the baked CA, VIP and node address in its SANs",
        ),
        expect.command(
            f"mkdir -p /run/bake-test && timeout 900 socat -u "
            f"TCP-LISTEN:{BARRIER_PORT},bind={cp.ip},reuseaddr OPEN:/run/bake-test/go,creat,trunc "
            f"&& cat /run/bake-test/go",
            contains=f"{worker} gave up",
            timeout=910,
            name=f"wait until {worker} has given up on the endpoint",
        ),
        expect.command(
            f"ip addr add {vip}/32 dev {_dev_of(cp.mac)} && mkdir -p {www} && echo ok > {www}/readyz && "
            f"systemd-run --unit=apiserver-standin --working-directory={www} "
            f"openssl s_server -quiet -WWW -accept {vip}:{port} "
            f"-cert {pki}/apiserver.crt -key {pki}/apiserver.key",
            name="TEST DOUBLE API server on the VIP (openssl s_server, baked apiserver cert)",
        ),
        expect.command(
            f"curl -sS --max-time 10 --cacert {pki}/ca.crt https://{vip}:{port}/readyz",
            contains="ok",
            wait_s=60,
            name="the endpoint answers and its certificate verifies against the baked CA",
        ),
    ]


def waiting_worker_checks(
    w: nodecheck.BakedNode, cp: nodecheck.BakedNode, endpoint: str
) -> list[dict[str, Any]]:
    readyz = f"https://{endpoint}/readyz"
    journal = nodecheck.JOURNAL  # the driver's and every phase's
    return [
        # boot 1: the endpoint does not answer; the worker waits, bounded, then gives up clearly.
        expect.command(
            journal,
            contains=[
                f"waits bounded to {WAIT_S}s",
                f"waiting for the API server at {readyz} (retry in 10s)",
                f"giving up after {WAIT_S}s: the API server at {readyz}",
                f"ERROR: the control-plane endpoint {endpoint} did not become ready; will retry",
                "giving up after 1 failed attempts in this boot",
                "bake-bootstrap.service: Failed with result 'exit-code'",
            ],
            not_contains="TEST STOP",
            boots=[1],
            name="boot 1: waited for the endpoint, gave up naming it, failed",
        ),
        expect.unit(
            "bake-bootstrap.service",
            properties={"ActiveState": "failed", "Result": "exit-code"},
            boots=[1],
            name="boot 1: bake-bootstrap.service failed visibly",
        ),
        expect.absent(nodecheck.STOPPED, boots=[1], name="boot 1: no kubeadm command reached"),
        expect.command(
            f"echo '{w.name} gave up' | socat -u - TCP:{cp.ip}:{BARRIER_PORT},connect-timeout=5",
            wait_s=600,
            boots=[1],
            name=f"boot 1: tell {cp.name} to bring the endpoint up",
        ),
        # boot 2: the unit runs again, finds the endpoint and stops right before kubeadm join.
        expect.command(
            journal,
            contains=["TEST STOP (after-waits)", f"would now run: {w.stop_command}"],
            not_contains="giving up",
            boots=[2],
            name="boot 2: retried, the endpoint answered, stopped right before kubeadm join",
        ),
        expect.command(
            f"grep -c 'giving up after {WAIT_S}s' {nodecheck.LOG}",
            contains="1",
            boots=[2],
            name="boot 2: the log keeps boot 1's give-up (one)",
        ),
    ]


def test_stacked_control_planes_and_workers(
    vm_image_amd64: GuestImage, vm_image_arm64: GuestImage, tmp_path: Path
) -> None:
    """ha-stacked at the default Kubernetes version: cp-1 (init, stacked etcd, kube-vip), cp-2 (joining
    control plane, arm64: qemu-system-aarch64) and worker-1 (the join order: waits for the endpoint, gives
    up, reboots, retries, reaches its stop; everything still in place after the reboot)."""
    manifest, nodes = bake(tmp_path / "out", "ha-stacked", "nodes[1].arch=arm64")
    cp1, cp2, w1 = nodes["cp-1"], nodes["cp-2"], nodes["worker-1"]
    assert (cp1.bootstrap_role, cp2.bootstrap_role, w1.bootstrap_role) == (
        "init",
        "join-control-plane",
        "worker",
    )
    assert cp2.arch == "arm64" and cp1.has("/etc/kubernetes/manifests/kube-vip.yaml")
    endpoint = manifest["endpoint"]
    vip, port = endpoint.rsplit(":", 1)
    assert w1.env["BAKE_API_ENDPOINT"] == endpoint
    # The whole cluster's files decide what no node may have; three of its nodes boot.
    everyone = list(nodes.values())
    specs = [
        spec(cp1, nodecheck.node_checks(cp1, everyone) + init_checks(cp1, vip, int(port), w1.name)),
        spec(
            cp2,
            [
                *nodecheck.node_checks(cp2, everyone),
                expect.command(["uname", "-m"], contains="aarch64", name="arm64 guest"),
                expect.command(["dpkg", "--print-architecture"], contains="arm64", name="arm64 userland"),
            ],
        ),
        spec(
            w1,
            nodecheck.node_checks(w1, everyone, stop_boots=[2], reboot_boots=[2])
            + waiting_worker_checks(w1, cp1, endpoint),
            reboots=1,
            # attempts=1: no automatic restart in boot 1, so the retry this test shows is boot 2's.
            test_stop=("after-waits", f"wait-seconds={WAIT_S}", "attempts=1"),
            bootstrap_fails_on=(1,),
        ),
    ]
    results = run_vms(specs, workdir=tmp_path / "run", timeout_s=RUN_TIMEOUT_S)

    def worker_boots(r: VmResult) -> list[str]:
        if r.name != w1.name or len(r.results) != 2:
            return []
        states = [(b["bootstrap"].get("ActiveState"), b["bootstrap"].get("Result")) for b in r.results]
        want = [("failed", "exit-code"), ("active", "success")]
        return [] if states == want else [f"bake-bootstrap per boot {states}, want {want}"]

    assert_green(results, worker_boots)
