"""bootstrap.py: the first-boot script (static text), its unit, and the shell-quoted env file.

The script is checked by bash -n and shellcheck, and run for real inside a private mount namespace
(overlays on /etc, /var and /usr/local, a tmpfs on /run) with stand-ins for the commands that would
touch the machine (modprobe, sysctl, systemctl, kubeadm, ...), so its steps, markers, test stop,
retries and reboots are exercised without changing this host.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import textwrap
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from builder import bootstrap, cloudinit, host
from builder.bootstrap import BootstrapRole
from builder.files import NodeFile, public, secret
from builder.plan import ClusterPlan, NodePlan, build_plan
from builder.profile import load_profile

TOKEN = "abcdef.0123456789abcdef"
CA_HASH = "sha256:" + "0" * 64


@cache
def _plan(name: str, *sets: str) -> ClusterPlan:
    return build_plan(load_profile(name, sets))


def fake_pki_files(plan: ClusterPlan, node: NodePlan) -> list[NodeFile]:
    """TEST DOUBLE for the secrets stage: fixed strings at the paths kubeadm uses. Only the structure of
    the rendering is under test here, never the certificates."""
    if node.role.value == "worker":
        return []
    if node.role.value == "etcd":
        return [public("/etc/kubernetes/pki/etcd/ca.crt", "FAKE ETCD CA\n")]
    files = [
        public("/etc/kubernetes/pki/ca.crt", "FAKE CA\n"),
        secret("/etc/kubernetes/pki/ca.key", b"FAKE CA KEY\n"),
        secret("/etc/kubernetes/admin.conf", b"FAKE admin.conf\n"),
    ]
    if node.is_init:
        files.append(secret("/etc/kubernetes/super-admin.conf", b"FAKE super-admin.conf\n"))
    return files


def _render(plan: ClusterPlan, node: NodePlan) -> cloudinit.RenderedNode:
    return cloudinit.render_node(
        plan, node, pki_files=fake_pki_files(plan, node), token=TOKEN, ca_hash=CA_HASH
    )


def _env(plan: ClusterPlan, node: NodePlan) -> dict[str, str]:
    files = cloudinit.node_files(
        plan, node, pki_files=fake_pki_files(plan, node), token=TOKEN, ca_hash=CA_HASH
    )
    return bootstrap.env_values(plan, node, host.host_prep(plan, node), node_files=files)


def _source(env_text: str, names: Sequence[str], cwd: Path) -> dict[str, str]:
    """Source the env file in bash with `set -u` and read every name back, NUL-separated."""
    env_file = cwd / "bootstrap.env"
    env_file.write_text(env_text)
    script = "set -euo pipefail; . ./bootstrap.env; " + " ".join(f'printf "%s\\0" "${n}";' for n in names)
    out = subprocess.run(
        ["bash", "-c", script], cwd=cwd, capture_output=True, check=True, env={"PATH": "/usr/bin:/bin"}
    )
    values = out.stdout.split(b"\0")[:-1]
    return dict(zip(names, (v.decode() for v in values), strict=True))


# --------------------------------------------------------------------------------------------------
# the script text


def test_script_is_the_same_for_every_node() -> None:
    texts = {
        f.content
        for name in ("ha-stacked", "ha-external-etcd")
        for node in _plan(name).nodes
        for f in _render(_plan(name), node).files
        if f.path == bootstrap.SCRIPT_PATH
    }
    assert texts == {bootstrap.script_text().encode()}


def test_script_passes_bash_n(tmp_path: Path) -> None:
    script = tmp_path / "bake-bootstrap"
    script.write_text(bootstrap.script_text())
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert bootstrap.script_text().startswith("#!/bin/bash\n")
    assert "set -Eeuo pipefail" in bootstrap.script_text()


def test_script_passes_shellcheck(tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    script = tmp_path / "bake-bootstrap"
    script.write_text(bootstrap.script_text())
    proc = subprocess.run(
        [shellcheck, "--shell=bash", "--severity=style", str(script)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout


def test_script_reads_exactly_the_env_names() -> None:
    used = set(re.findall(r"\bBAKE_[A-Z0-9_]*[A-Z0-9]", bootstrap.script_text()))
    assert used == set(bootstrap.ENV_NAMES)


def test_unit() -> None:
    unit = bootstrap.unit_text()
    assert "Type=oneshot\n" in unit and "RemainAfterExit=yes\n" in unit
    assert f"ConditionPathExists=!{bootstrap.DONE_PATH}\n" in unit
    assert f"ExecStart={bootstrap.SCRIPT_PATH}\n" in unit
    assert "WantedBy=multi-user.target\n" in unit
    # cloud-final is After=multi-user.target on Debian/Ubuntu: ordering after it would be a cycle.
    assert "After=network-online.target cloud-init.service\n" in unit and "cloud-final" not in unit


# --------------------------------------------------------------------------------------------------
# the env file


def test_env_values_per_role() -> None:
    plan = _plan("ha-stacked")
    env = {n.name: _env(plan, n) for n in plan.nodes}
    assert [env[n]["BAKE_ROLE"] for n in ("cp-1", "cp-2", "cp-3", "worker-1")] == [
        "init", "join-control-plane", "join-control-plane", "worker",
    ]  # fmt: skip
    assert env["cp-1"]["BAKE_KUBEADM_CONFIG"] == "/run/kubeadm/kubeadm.yaml"
    assert env["cp-2"]["BAKE_KUBEADM_CONFIG"] == "/run/kubeadm/kubeadm-join-config.yaml"
    assert env["cp-1"]["BAKE_JOIN_AFTER"] == "" and env["cp-2"]["BAKE_JOIN_AFTER"] == "cp-1"
    assert env["cp-3"]["BAKE_JOIN_AFTER"] == "cp-1 cp-2"
    assert env["cp-3"]["BAKE_JOIN_AFTER_PODS"] == "etcd kube-apiserver"
    assert env["worker-1"]["BAKE_JOIN_AFTER"] == ""
    assert env["worker-1"]["BAKE_API_ENDPOINT"] == "10.77.0.10:6443" == env["cp-2"]["BAKE_API_ENDPOINT"]
    assert env["cp-1"]["BAKE_API_ENDPOINT"] == ""
    # kube-vip starts on super-admin.conf on the init node only; the script switches it afterwards.
    assert env["cp-1"]["BAKE_KUBE_VIP_MANIFEST"] == "/etc/kubernetes/manifests/kube-vip.yaml"
    assert env["cp-2"]["BAKE_KUBE_VIP_MANIFEST"] == ""
    assert env["cp-1"]["BAKE_CNI"] == "calico" and env["worker-1"]["BAKE_CNI"] == "none"
    assert env["cp-1"]["BAKE_CNI_CONFIG"] == "/etc/bake/cni/calico-installation.yaml"
    retry = env["cp-1"]["BAKE_KUBEADM_RETRY_IGNORE"].split(",")
    assert "Port-6443" in retry and "all" not in retry  # kubeadm refuses "all" next to the config's list

    ext = _plan("ha-external-etcd")
    assert _env(ext, ext.node("cp-3"))["BAKE_JOIN_AFTER_PODS"] == "kube-apiserver"
    etcd = _env(ext, ext.node("etcd-1"))
    assert (
        etcd["BAKE_ROLE"] == "etcd"
        and etcd["BAKE_KUBEADM_CONFIG"] == ""
        and etcd["BAKE_KUBEADM_RETRY_IGNORE"] == ""
    )
    ha = _env(ext, ext.node("worker-2"))
    assert ha["BAKE_API_ENDPOINT"] == "10.77.0.10:8443"  # the haproxy frontend


def test_env_ipv6_endpoint_is_bracketed() -> None:
    plan = _plan(
        "ha-stacked",
        "cluster.loadBalancer.vip=fd00:77::10",
        "cluster.podSubnet=fd00:10:244::/56",
        "cluster.serviceSubnet=fd00:10:96::/112",
        "defaults.gateway=fd00:77::1",
        "defaults.prefixLength=64",
        "nodes[0].ip=fd00:77::11",
        "nodes[1].ip=fd00:77::12",
        "nodes[2].ip=fd00:77::13",
        "nodes[3].ip=fd00:77::21",
        "nodes[4].ip=fd00:77::22",
    )
    assert _env(plan, plan.node("worker-1"))["BAKE_API_ENDPOINT"] == "[fd00:77::10]:6443"
    installation = bootstrap.calico_documents(plan)[0]
    pool = installation["spec"]["calicoNetwork"]["ipPools"][0]  # type: ignore[index]
    assert pool["cidr"] == "fd00:10:244::/56" and pool["blockSize"] == 122


def test_env_file_round_trips_through_bash(tmp_path: Path) -> None:
    for name in ("ha-stacked", "ha-external-etcd", "single-node"):
        plan = _plan(name)
        for node in plan.nodes:
            values = _env(plan, node)
            assert tuple(values) == bootstrap.ENV_NAMES
            assert _source(bootstrap.env_text(values), bootstrap.ENV_NAMES, tmp_path) == values


@settings(max_examples=60, deadline=None)
@given(value=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=60))
def test_env_text_quotes_anything(tmp_path_factory: pytest.TempPathFactory, value: str) -> None:
    work = tmp_path_factory.mktemp("env")
    values = dict.fromkeys(bootstrap.ENV_NAMES, "x")
    values["BAKE_CNI_URLS"] = value
    assert _source(bootstrap.env_text(values), ["BAKE_CNI_URLS"], work)["BAKE_CNI_URLS"] == value
    assert sorted(p.name for p in work.iterdir()) == ["bootstrap.env"]


def test_env_payloads_run_nothing(tmp_path: Path) -> None:
    payloads = [
        "$(touch pwned-1)",
        "`touch pwned-2`",
        "a; touch pwned-3",
        "a\ntouch pwned-4\n",
        "'; touch pwned-5; '",
        '"; touch pwned-6; "',
        "x: y # z && touch pwned-7 || touch pwned-8",
    ]
    values = dict.fromkeys(bootstrap.ENV_NAMES, "")
    for name, payload in zip(bootstrap.ENV_NAMES, payloads, strict=False):
        values[name] = payload
    got = _source(bootstrap.env_text(values), bootstrap.ENV_NAMES, tmp_path)
    assert got == values
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bootstrap.env"]


def test_env_refuses_nul_and_foreign_names() -> None:
    values = dict.fromkeys(bootstrap.ENV_NAMES, "")
    values["BAKE_OS"] = "a\x00b"
    with pytest.raises(ValueError, match="NUL"):
        bootstrap.env_text(values)
    with pytest.raises(ValueError, match="ENV_NAMES"):
        bootstrap.env_text({"BAKE_EVIL": "x"})


# --------------------------------------------------------------------------------------------------
# CNI data


def test_cni_configs_carry_the_pod_cidr() -> None:
    plan = _plan("single-master", "cluster.podSubnet=10.200.0.0/16")
    docs = bootstrap.calico_documents(plan)
    assert [d["kind"] for d in docs] == ["Installation", "APIServer"]
    pool = docs[0]["spec"]["calicoNetwork"]["ipPools"][0]  # type: ignore[index]
    assert pool["cidr"] == "10.200.0.0/16" and pool["blockSize"] == 26
    installation = bootstrap.cni_config_file(plan)
    assert installation is not None and installation.path == "/etc/bake/cni/calico-installation.yaml"
    assert list(yaml.safe_load_all(installation.content)) == docs

    plan = _plan("single-master", "cluster.podSubnet=10.200.0.0/16", "cluster.cni=flannel")
    patch = bootstrap.cni_config_file(plan)
    assert patch is not None
    import json

    net_conf = json.loads(yaml.safe_load(patch.content)["data"]["net-conf.json"])
    assert net_conf == {"Network": "10.200.0.0/16", "EnableNFTables": False, "Backend": {"Type": "vxlan"}}

    plan = _plan("single-master", "cluster.cni=cilium", "defaults.arch=arm64")
    values = bootstrap.cni_config_file(plan)
    assert values is not None and yaml.safe_load(values.content)["ipam"] == {"mode": "kubernetes"}
    env = _env(plan, plan.node("cp-1"))
    assert env["BAKE_CNI_URLS"].split() == [
        f"{bootstrap.CILIUM_CLI_BASE_URL}/{bootstrap.CILIUM_CLI_VERSION}/cilium-linux-arm64.tar.gz",
        f"{bootstrap.CILIUM_CLI_BASE_URL}/{bootstrap.CILIUM_CLI_VERSION}/cilium-linux-arm64.tar.gz.sha256sum",
    ]
    assert bootstrap.cni_config_file(_plan("single-master", "cluster.cni=none")) is None


def test_cni_mirror_is_overridable() -> None:
    source = bootstrap.CniSource(calico_base_url="http://mirror.lan/calico/")
    assert source.urls(load_profile("single-master").cluster.cni, "amd64") == (
        f"http://mirror.lan/calico/{bootstrap.CALICO_VERSION}/manifests/operator-crds.yaml",
        f"http://mirror.lan/calico/{bootstrap.CALICO_VERSION}/manifests/tigera-operator.yaml",
    )


# --------------------------------------------------------------------------------------------------
# running the script in a sandbox

STUB = r"""#!/bin/bash
# stand-in recorded by the bootstrap sandbox test
name=$(basename "$0")
printf '%s\n' "$name $*" >>/var/tmp/stub-calls.log
case "$name" in
containerd)
    [[ ${1:-} == --version ]] && echo "containerd github.com/containerd/containerd/v2 v2.1.4 deadbeef"
    ;;
kubeadm)
    if [[ ${1:-} == version ]]; then echo "v${STUB_KUBEADM_VERSION:-1.37.2}"; exit 0; fi
    if [[ -e /run/stub-kubeadm-fail-once ]]; then
        rm -f /run/stub-kubeadm-fail-once
        echo "kubeadm stub: failing" >&2
        exit 1
    fi
    ;;
kubectl)
    if [[ " $* " == *" jsonpath="* ]]; then printf 'True'; fi
    if [[ " $* " == *" daemonset cilium "* ]]; then exit 1; fi
    ;;
curl)
    out=
    while (($#)); do if [[ $1 == -o ]]; then out=$2; shift; fi; shift; done
    if [[ -n $out ]]; then echo "downloaded" >"$out"; fi
    if [[ -e /run/stub-endpoint-down ]]; then exit 7; fi
    ;;
gpg)
    out=
    while (($#)); do if [[ $1 == -o ]]; then out=$2; shift; fi; shift; done
    cat >/dev/null
    echo "keyring" >"$out"
    ;;
getenforce) echo Enforcing ;;
firewall-cmd) [[ ${1:-} == --state ]] && exit 252 ;;
ufw) echo "Status: inactive" ;;
esac
exit 0
"""
STUBBED = (
    "modprobe", "sysctl", "swapoff", "systemctl", "setenforce", "getenforce", "containerd", "kubeadm",
    "kubectl", "curl", "gpg", "apt-get", "apt-mark", "dnf", "firewall-cmd", "ufw", "tar", "sha256sum",
    "cilium",
)  # fmt: skip
FSTAB = "/dev/vda / ext4 rw 0 1\n/swapfile none swap sw 0 0\n"

DRIVER = r"""#!/bin/bash
# Runs inside `unshare -m`: nothing written here reaches the host's /etc, /var, /usr/local or /run.
set -euo pipefail
S=$1
mount --make-rprivate /
for d in etc var usr/local; do
    mkdir -p "$S/upper/$d" "$S/work/$d"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$S/upper/$d,workdir=$S/work/$d" "/$d"
done
mount -t tmpfs tmpfs /run
mkdir -p /usr/local/sbin /usr/local/bin
for c in $STUBBED; do install -m 0755 "$S/stub" "/usr/local/sbin/$c"; done
cp "$S/fstab" /etc/fstab
# cloud-init's write_files, from RenderedNode.files
while IFS= read -r -d '' path && IFS= read -r -d '' mode; do
    install -D -m "$mode" "$S/files/${path#/}" "$path"
done <"$S/files.list"
sockets() {  # what containerd / CRI-O would create when (re)started
    mkdir -p /run/containerd /run/crio
    "$PY" -c 'import socket,sys; [socket.socket(socket.AF_UNIX).bind(p) for p in sys.argv[1:]]' \
        /run/containerd/containerd.sock /run/crio/crio.sock
}
sockets
run() {
    local rc=0
    echo "=== run" >>/var/tmp/stub-calls.log
    /usr/local/sbin/bake-bootstrap >>"$S/out/stdout.log" 2>&1 || rc=$?
    echo "$rc" >>"$S/out/rcs"
}
reboot() {  # /run is a tmpfs: a reboot empties it
    umount /run
    mount -t tmpfs tmpfs /run
    sockets
}
. "$S/scenario.sh"
mkdir -p "$S/out/state" "$S/out/run"
cp -a /var/lib/bake/. "$S/out/state/" 2>/dev/null || true
cp -a /var/log/bake/bootstrap.log "$S/out/bootstrap.log" 2>/dev/null || true
cp -a /etc/fstab "$S/out/fstab"
cp -a /run/. "$S/out/run/" 2>/dev/null || true
cp -a /var/tmp/stub-calls.log "$S/out/calls.log" 2>/dev/null || true
"""


class Sandbox:
    def __init__(self, root: Path, rendered: cloudinit.RenderedNode) -> None:
        self.root = root
        (root / "out").mkdir(parents=True)
        (root / "stub").write_text(STUB)
        (root / "fstab").write_text(FSTAB)
        (root / "driver.sh").write_text(DRIVER)
        listing = b""
        for f in rendered.files:
            target = root / "files" / f.path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.content)
            listing += f.path.encode() + b"\0" + f"{f.mode:04o}".encode() + b"\0"
        (root / "files.list").write_bytes(listing)

    def run(self, scenario: str) -> Sandbox:
        (self.root / "scenario.sh").write_text(textwrap.dedent(scenario))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "STUBBED": " ".join(STUBBED), "PY": _python()}
        proc = subprocess.run(
            ["unshare", "-m", "bash", str(self.root / "driver.sh"), str(self.root)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return self

    def text(self, rel: str) -> str:
        path = self.root / "out" / rel
        return path.read_text() if path.exists() else ""

    @property
    def rcs(self) -> list[int]:
        return [int(x) for x in self.text("rcs").split()]

    @property
    def runs(self) -> list[list[str]]:
        """The stand-ins' calls, one list per run of the script."""
        out: list[list[str]] = []
        for line in self.text("calls.log").splitlines():
            if line == "=== run":
                out.append([])
            else:
                out[-1].append(line)
        return out

    @property
    def calls(self) -> list[str]:
        return [c for run in self.runs for c in run]

    def steps(self) -> set[str]:
        d = self.root / "out" / "state" / "steps"
        return {p.name.removesuffix(".done") for p in d.glob("*.done")} if d.exists() else set()


def _python() -> str:
    for candidate in ("/usr/bin/python3", shutil.which("python3")):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.skip("no python3 to create a unix socket")


@pytest.fixture(scope="module")
def can_sandbox(tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("probe")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("the bootstrap sandbox needs root and unshare (private mount namespace)")
    if any(str(tmp).startswith(p) for p in ("/etc", "/var", "/usr/local", "/run")):
        pytest.skip("the temporary directory is inside a sandboxed tree")
    probe = "mkdir -p $0/u $0/w && mount -t overlay overlay -o lowerdir=/etc,upperdir=$0/u,workdir=$0/w /etc"
    proc = subprocess.run(["unshare", "-m", "sh", "-c", probe, str(tmp)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"no overlay mounts in a private mount namespace here: {proc.stderr!r}")


def _sandbox(tmp_path: Path, profile: str, node: str, *sets: str) -> Sandbox:
    plan = _plan(profile, "cluster.packages.mode=prebaked", *sets)
    return Sandbox(tmp_path / "sb", _render(plan, plan.node(node)))


@pytest.mark.integration
@pytest.mark.parametrize(
    ("profile", "node", "stopped"),
    [
        ("ha-stacked", "cp-1", "kubeadm init --config /run/kubeadm/kubeadm.yaml"),
        ("ha-stacked", "cp-2", "kubeadm join --config /run/kubeadm/kubeadm-join-config.yaml"),
        ("ha-stacked", "worker-1", "kubeadm join --config /run/kubeadm/kubeadm-join-config.yaml"),
        ("ha-external-etcd", "etcd-1", "systemctl daemon-reload && systemctl restart kubelet"),
    ],
)
def test_test_stop_before_kubeadm(
    can_sandbox: None, tmp_path: Path, profile: str, node: str, stopped: str
) -> None:
    sb = _sandbox(tmp_path, profile, node).run(
        f"""
        touch {bootstrap.TEST_STOP_PATH}
        run
        reboot
        run
        """
    )
    assert sb.rcs == [0, 0], sb.text("stdout.log")
    assert sb.text("state/bootstrap.stopped") == stopped + "\n"
    assert not (sb.root / "out/state/bootstrap.done").exists()
    assert sb.steps() == {"modules-sysctl", "swap-off", "firewall", "runtime", "kubelet-enable"}
    first, second = sb.runs
    assert not any(c.startswith(("kubeadm init", "kubeadm join", "curl")) for c in first + second)
    assert "systemctl restart kubelet" not in first + second
    assert "systemctl restart containerd" in first
    assert second == []  # steps already done; nothing runs again after the "reboot"
    log = sb.text("bootstrap.log")
    assert "TEST STOP" in log and "step swap-off: already done" in log
    assert "#bake-swap-off# /swapfile none swap sw 0 0" in sb.text("fstab")
    if node != "etcd-1":
        saved = sb.root / "out/state/kubeadm" / Path(stopped.split()[-1]).name
        assert saved.exists()  # kept outside /run, restored at each boot


@pytest.mark.integration
def test_init_runs_to_done(can_sandbox: None, tmp_path: Path) -> None:
    sb = _sandbox(tmp_path, "ha-stacked", "cp-1").run("run\nrun\n")
    assert sb.rcs == [0, 0], sb.text("stdout.log")
    calls = sb.calls
    init = calls.index("kubeadm init --config /run/kubeadm/kubeadm.yaml")
    assert calls.index("systemctl enable kubelet.service") < init
    assert any("apply --server-side" in c and "tigera-operator.yaml" in c for c in calls[init:])
    assert any(c.endswith("apply -f /etc/bake/cni/calico-installation.yaml") for c in calls[init:])
    assert (sb.root / "out/state/bootstrap.done").exists()
    assert sb.text("run/cluster-api/bootstrap-success.complete") == "success\n"
    assert "already done" in sb.text("bootstrap.log").splitlines()[-1]
    # kube-vip was switched from super-admin.conf to admin.conf after init (files seen through the overlay).
    manifest = sb.root / "upper/etc/kubernetes/manifests/kube-vip.yaml"
    assert b"/etc/kubernetes/super-admin.conf" not in manifest.read_bytes()
    assert calls.count("kubeadm init --config /run/kubeadm/kubeadm.yaml") == 1


@pytest.mark.integration
def test_join_order_and_retry_after_failure(can_sandbox: None, tmp_path: Path) -> None:
    sb = _sandbox(tmp_path, "ha-stacked", "cp-3").run(
        """
        touch /run/stub-kubeadm-fail-once
        run
        reboot
        run
        """
    )
    assert sb.rcs == [1, 0], sb.text("stdout.log")
    assert any(c.startswith("kubeadm join") for c in sb.runs[0])
    calls = sb.runs[1]
    join = next(i for i, c in enumerate(calls) if c.startswith("kubeadm join"))
    assert calls[join].startswith(
        "kubeadm join --config /run/kubeadm/kubeadm-join-config.yaml --ignore-preflight-errors="
    )
    ignored = calls[join].split("=", 1)[1].split(",")
    assert "FileAvailable--etc-kubernetes-kubelet.conf" in ignored and "all" not in ignored
    readyz = [c for c in calls[:join] if c.startswith("curl") and "/readyz" in c]
    assert readyz and "https://10.77.0.10:6443/readyz" in readyz[0]
    peers = [c for c in calls[:join] if "jsonpath" in c]
    pods = [c.split()[c.split().index("pod") + 1] for c in peers]
    assert pods == ["etcd-cp-1", "kube-apiserver-cp-1", "etcd-cp-2", "kube-apiserver-cp-2"]
    assert (sb.root / "out/state/bootstrap.done").exists()


@pytest.mark.integration
def test_worker_gives_up_on_a_dead_endpoint(can_sandbox: None, tmp_path: Path) -> None:
    sb = _sandbox(tmp_path, "single-master", "worker-1")
    env_file = sb.root / "files" / bootstrap.ENV_PATH.lstrip("/")
    env_file.write_text(
        env_file.read_text().replace("BAKE_WAIT_ENDPOINT_SECONDS=1800", "BAKE_WAIT_ENDPOINT_SECONDS=1")
    )
    sb.run("touch /run/stub-endpoint-down\nrun\n")
    assert sb.rcs == [1]
    assert not any(c.startswith("kubeadm join") for c in sb.calls)
    log = sb.text("bootstrap.log")
    assert "did not become ready; will retry at next boot" in log


@pytest.mark.integration
def test_etcd_member_restarts_kubelet(can_sandbox: None, tmp_path: Path) -> None:
    sb = _sandbox(tmp_path, "ha-external-etcd", "etcd-2").run("run\n")
    assert sb.rcs == [0], sb.text("stdout.log")
    calls = sb.calls
    assert calls.index(
        "systemctl daemon-reload", calls.index("systemctl enable kubelet.service")
    ) < calls.index("systemctl restart kubelet")
    assert not any(c.startswith("kubeadm") for c in calls)
    assert (sb.root / "out/state/bootstrap.done").exists()


@pytest.mark.integration
def test_repos_mode_installs_pinned_packages_after_keys(can_sandbox: None, tmp_path: Path) -> None:
    plan = _plan("single-master", "cluster.containerRuntime=crio")
    sb = Sandbox(tmp_path / "sb", _render(plan, plan.node("worker-1")))
    sb.run(f"touch {bootstrap.TEST_STOP_PATH}\nrun\n")
    assert sb.rcs == [0], sb.text("stdout.log")
    calls = sb.calls
    keys = [i for i, c in enumerate(calls) if c.startswith("curl") and "Release.key" in c]
    install = next(i for i, c in enumerate(calls) if c.startswith("apt-get") and "kubelet=1.37.2-*" in c)
    assert len(keys) == 2 and max(keys) < install
    assert "cri-o" in calls[install].split()
    assert "apt-mark hold kubelet kubeadm kubectl" in calls
    written = sorted(p.name for p in (sb.root / "upper/etc/apt/sources.list.d").iterdir())
    assert written == ["cri-o.list", "kubernetes.list"]
    assert (sb.root / "upper/etc/apt/keyrings/cri-o-apt-keyring.gpg").read_text() == "keyring\n"
    assert "systemctl restart crio" in calls


def test_quoting_helper_matches_shlex() -> None:
    values = dict.fromkeys(bootstrap.ENV_NAMES, "a b")
    text = bootstrap.env_text(values)
    assert f"BAKE_OS={shlex.quote('a b')}\n" in text


def test_role_of_every_node() -> None:
    plan = _plan("ha-external-etcd")
    roles = {n.name: bootstrap.bootstrap_role(n) for n in plan.nodes}
    assert roles["etcd-3"] is BootstrapRole.ETCD
    assert roles["cp-1"] is BootstrapRole.INIT
    assert roles["cp-3"] is BootstrapRole.JOIN_CONTROL_PLANE
    assert roles["worker-2"] is BootstrapRole.WORKER
