"""bootstrap.py: the first-boot scripts (plain shell), their units, and the shell-quoted env file.

The scripts are checked by bash -n and shellcheck, and run for real inside a private mount namespace
(overlays on /etc, /var and /usr/local, a tmpfs on /run) with stand-ins for the commands that would
touch the machine (modprobe, sysctl, kubeadm, ...) and a systemctl TEST DOUBLE that runs the bake units
as systemd would (Requires= chain, conditions, ExecCondition=, drop-ins), so the phases, markers,
retries and reboots, and the VM harness's test stop (tests/vm/guest/bake_test_stop.py), are exercised
without changing this host.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import textwrap
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from builder import paths, resources
from builder.files import NodeFile, public, secret
from builder.node import archive, bootstrap, cloudinit, compact_keys, distribute, host
from builder.node.bootstrap.env import BootstrapRole
from builder.pki import secrets
from builder.plan import ClusterPlan, NodePlan
from builder.validation.profile import load_profile

from .helpers import OVERLAYS, plan_of, rendered_node, write_file_content
from .peers import missing, program

TOKEN = "abcdef.0123456789abcdef"
# kubeadm init prints the bootstrap token (and a join command with it) unless told not to
INIT_CALL = "kubeadm init --config /run/kubeadm/kubeadm.yaml --skip-token-print"
CA_HASH = "sha256:" + "0" * 64


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
    return bootstrap.env.env_values(plan, node, host.host_prep(plan, node), node_files=files)


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


def _script_files(rendered: cloudinit.RenderedNode) -> dict[str, bytes]:
    return {
        f.path: f.content
        for f in rendered.files
        if f.path == bootstrap.layout.SCRIPT_PATH or f.path.startswith(bootstrap.layout.LIB_DIR + "/")
    }


def test_scripts_are_the_same_for_every_node() -> None:
    texts = {
        tuple(sorted(_script_files(_render(plan_of(name), node)).items()))
        for name in ("ha-stacked", "ha-external-etcd")
        for node in plan_of(name).nodes
    }
    assert len(texts) == 1
    [scripts] = texts
    expected = {bootstrap.layout.SCRIPT_PATH, f"{bootstrap.layout.LIB_DIR}/lib.sh"}
    phases = ("prep", "packages", "runtime", "wait", "kubeadm", "cni")
    expected |= {f"{bootstrap.layout.LIB_DIR}/{p}.sh" for p in phases}
    assert {path for path, _ in scripts} == expected


def _script_dir() -> Path:
    """The scripts as the package ships them (plain files, no rendering)."""
    folder = resources.templates_dir() / "bootstrap"
    # beside the first boot's scripts: the certificate renewal's (tests/test_renewal.py)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*bootstrap.script_texts(), "renew-certs.sh", "report.sh"]
    )
    return folder


def test_scripts_pass_bash_n(tmp_path: Path) -> None:
    for name, text in bootstrap.script_texts().items():
        script = tmp_path / name
        script.write_text(text)
        subprocess.run(["bash", "-n", str(script)], check=True)
        assert text.startswith("#!/bin/bash\n"), name
        # every script runs under lib.sh's strict mode, sourced from where the node has it
        if name != "lib.sh":
            assert f". {bootstrap.layout.LIB_DIR}/lib.sh\n" in text, name
    assert "set -Eeuo pipefail\n" in bootstrap.script_texts()["lib.sh"]


def test_scripts_pass_shellcheck() -> None:
    shellcheck = program("shellcheck")
    folder = _script_dir()
    proc = subprocess.run(
        [shellcheck, "--shell=bash", "--severity=style", "--external-sources", "--source-path=SCRIPTDIR",
         *sorted(str(p) for p in folder.glob("*.sh"))],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout


def test_scripts_have_no_template_syntax_and_no_test_hook() -> None:
    for name, text in bootstrap.script_texts().items():
        assert "{{" not in text and "{%" not in text, name
        for hook in ("test-stop", "TEST_STOP", "TEST STOP", "bootstrap.stopped", "after-waits"):
            assert hook not in text, (name, hook)


# What the declared test-only stop is made of (tests/vm/guest/bake_test_stop.py): none of it may be in
# a production seed.
TEST_HOOK_MARKS = (
    b"test-stop", b"TEST STOP", b"TEST_STOP", b"bootstrap.stopped", b"after-waits", b"bake-test",
    b"ExecCondition", b"wait-seconds", b"TEST INTERRUPT", b"kubeadm.interrupted",
)  # fmt: skip


@pytest.mark.parametrize("profile", resources.profile_names())
def test_no_embedded_profiles_seed_carries_a_test_hook(profile: str) -> None:
    plan = plan_of(profile)
    for node in plan.nodes:
        rendered = _render(plan, node)
        for doc in (rendered.user_data, rendered.meta_data, rendered.network_config):
            found = [m for m in TEST_HOOK_MARKS if m in doc]
            assert not found, (node.name, found)
        assert not [f.path for f in rendered.files if any(m in f.content for m in TEST_HOOK_MARKS)]
        # and the units are the production ones: nothing drops in on them
        assert not [f.path for f in rendered.files if ".service.d/" in f.path and "bake-" in f.path]
    # the marks are those of the harness's test stop (so this test looks for the right things)
    harness = TEST_STOP_SCRIPT.read_bytes()
    assert all(m in harness for m in TEST_HOOK_MARKS if m != b"TEST_STOP")


def test_scripts_read_exactly_the_env_names() -> None:
    used: set[str] = set()
    for text in bootstrap.script_texts().values():
        used |= set(re.findall(r"\bBAKE_[A-Z0-9_]*[A-Z0-9]", text))
    assert used == set(bootstrap.env.ENV_NAMES)


def test_lib_constants_agree_with_the_renderer() -> None:
    """lib.sh's paths are the ones the renderer writes and documents (read from bash, not from text)."""
    lib = bootstrap.script_texts()["lib.sh"]
    names = ["ENV_FILE", "STATE_DIR", "STEPS_DIR", "DONE_FILE", "LOG_FILE", "SAVED_CONFIG_DIR",
             "CAPI_SENTINEL", "ADMIN_CONF", "SYSCTL_FILE", "ATTEMPTS_FILE", "GIVE_UP_STATUS", "UNIT",
             "JOIN_TOKEN_TIMER", "PHASE_DIR"]  # fmt: skip
    script = lib + "".join(f'printf "%s\\0" "${n}"\n' for n in names) + 'printf "%s " "${PHASES[@]}"\n'
    out = subprocess.run(["bash", "-c", script], capture_output=True, check=True).stdout.decode()
    *values, phases = out.split("\0")
    assert dict(zip(names, values, strict=True)) == {
        "ENV_FILE": bootstrap.layout.ENV_PATH,
        "STATE_DIR": bootstrap.layout.STATE_DIR,
        "STEPS_DIR": bootstrap.layout.STEPS_DIR,
        "DONE_FILE": bootstrap.layout.DONE_PATH,
        "LOG_FILE": bootstrap.layout.LOG_PATH,
        "SAVED_CONFIG_DIR": bootstrap.layout.SAVED_CONFIG_DIR,
        "CAPI_SENTINEL": bootstrap.layout.CAPI_SENTINEL_PATH,
        "ADMIN_CONF": bootstrap.layout.ADMIN_CONF_PATH,
        "SYSCTL_FILE": host.SYSCTL_PATH,
        "ATTEMPTS_FILE": bootstrap.layout.ATTEMPTS_PATH,
        "GIVE_UP_STATUS": str(bootstrap.layout.GIVE_UP_STATUS),
        "UNIT": bootstrap.layout.UNIT_NAME,
        "JOIN_TOKEN_TIMER": f"{bootstrap.layout.JOIN_TOKEN_UNIT}.timer",
        "PHASE_DIR": bootstrap.layout.LIB_DIR,
    }
    assert tuple(phases.split()) == bootstrap.layout.PHASES


def test_unit() -> None:
    unit = bootstrap.units.unit_text()
    assert "Type=oneshot\n" in unit and "RemainAfterExit=yes\n" in unit
    assert f"ConditionPathExists=!{bootstrap.layout.DONE_PATH}\n" in unit
    assert f"ExecStart={bootstrap.layout.SCRIPT_PATH}\n" in unit
    assert "WantedBy=multi-user.target\n" in unit
    # cloud-final is After=multi-user.target on Debian/Ubuntu: ordering after it would be a cycle.
    assert "cloud-final" not in unit
    # Certificates need a right clock: after time synchronisation.
    head = unit[: unit.index("[Service]")]
    wants = next(line for line in head.splitlines() if line.startswith("Wants="))
    after = next(line for line in head.splitlines() if line.startswith("After="))
    assert "time-sync.target" in wants.split("=", 1)[1].split()
    assert {"time-sync.target", "network-online.target", "cloud-init.service"} <= set(
        after.split("=", 1)[1].split()
    )
    # A failed run is restarted, with a delay, until the script gives up with GIVE_UP_STATUS.
    service = unit[unit.index("[Service]") :]
    assert "Restart=on-failure\n" in service and f"RestartSec={bootstrap.layout.RESTART_SEC}s\n" in service
    assert f"RestartPreventExitStatus={bootstrap.layout.GIVE_UP_STATUS}\n" in service
    assert "StartLimitIntervalSec=" in head and "StartLimitBurst=" in head
    # No phase unit in the driver's dependencies: the phases load only when it starts them.
    assert "bake-bootstrap-" not in unit


def _unit_keys(text: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            keys.setdefault(key, []).append(value)
    return keys


def test_phase_units_form_one_chain() -> None:
    """Each phase requires and is ordered after the one before; the driver starts the last one."""
    phases = ("prep", "packages", "runtime", "wait", "kubeadm", "cni")
    assert phases == bootstrap.layout.PHASES
    for i, phase in enumerate(phases):
        keys = _unit_keys(bootstrap.units.phase_unit_text(phase))
        assert keys["ExecStart"] == [f"/usr/local/lib/bake/bootstrap/{phase}.sh"]
        assert keys["Type"] == ["oneshot"] and keys["RemainAfterExit"] == ["yes"]
        assert keys["ConditionPathExists"] == [f"!{bootstrap.layout.DONE_PATH}"]
        assert "Restart" not in keys and "WantedBy" not in keys  # the driver restarts and starts them
        if i == 0:
            assert "Requires" not in keys
            assert {"time-sync.target", "network-online.target"} <= set(keys["After"][0].split())
        else:
            assert keys["Requires"] == keys["After"] == [f"bake-bootstrap-{phases[i - 1]}.service"]
    # kubeadm's presence is checked before the waits, not after them
    wait = _unit_keys(bootstrap.units.phase_unit_text("wait"))
    assert wait["ExecStartPre"] == ["/usr/local/lib/bake/bootstrap/kubeadm.sh check"]
    assert 'last=$(phase_unit "${PHASES[-1]}")' in bootstrap.script_text()


# --------------------------------------------------------------------------------------------------
# the env file


def test_env_values_per_role() -> None:
    plan = plan_of("ha-stacked")
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
    # Baked files that kubeadm reset would delete, kept for a clean retry: kubeadm roles only.
    keep = env["cp-2"]["BAKE_KEEP_FILES"].split()
    assert {
        "/etc/kubernetes/pki/ca.key",
        "/etc/kubernetes/admin.conf",
        "/etc/kubernetes/manifests/kube-vip.yaml",
    } <= set(keep)
    assert all(p.startswith(("/etc/kubernetes/", "/var/lib/kubelet/")) for p in keep)

    ext = plan_of("ha-external-etcd")
    assert _env(ext, ext.node("cp-3"))["BAKE_JOIN_AFTER_PODS"] == "kube-apiserver"
    etcd = _env(ext, ext.node("etcd-1"))
    assert etcd["BAKE_ROLE"] == "etcd" and etcd["BAKE_KUBEADM_CONFIG"] == "" and etcd["BAKE_KEEP_FILES"] == ""
    ha = _env(ext, ext.node("worker-2"))
    assert ha["BAKE_API_ENDPOINT"] == "10.77.0.10:8443"  # the haproxy frontend


def test_env_ipv6_endpoint_is_bracketed() -> None:
    plan = plan_of(
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
    installation = bootstrap.cni.calico_documents(plan)[0]
    pool = installation["spec"]["calicoNetwork"]["ipPools"][0]  # type: ignore[index]
    assert pool["cidr"] == "fd00:10:244::/56" and pool["blockSize"] == 122


def test_env_file_round_trips_through_bash(tmp_path: Path) -> None:
    for name in ("ha-stacked", "ha-external-etcd", "single-node"):
        plan = plan_of(name)
        for node in plan.nodes:
            values = _env(plan, node)
            assert tuple(values) == bootstrap.env.ENV_NAMES
            assert _source(bootstrap.env.env_text(values), bootstrap.env.ENV_NAMES, tmp_path) == values


@settings(max_examples=60, deadline=None)
@given(value=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=60))
def test_env_text_quotes_anything(tmp_path_factory: pytest.TempPathFactory, value: str) -> None:
    work = tmp_path_factory.mktemp("env")
    values = dict.fromkeys(bootstrap.env.ENV_NAMES, "x")
    values["BAKE_CNI_URLS"] = value
    assert _source(bootstrap.env.env_text(values), ["BAKE_CNI_URLS"], work)["BAKE_CNI_URLS"] == value
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
    values = dict.fromkeys(bootstrap.env.ENV_NAMES, "")
    for name, payload in zip(bootstrap.env.ENV_NAMES, payloads, strict=False):
        values[name] = payload
    got = _source(bootstrap.env.env_text(values), bootstrap.env.ENV_NAMES, tmp_path)
    assert got == values
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bootstrap.env"]


def test_env_refuses_nul_and_foreign_names() -> None:
    values = dict.fromkeys(bootstrap.env.ENV_NAMES, "")
    values["BAKE_OS"] = "a\x00b"
    with pytest.raises(ValueError, match="NUL"):
        bootstrap.env.env_text(values)
    with pytest.raises(ValueError, match="ENV_NAMES"):
        bootstrap.env.env_text({"BAKE_EVIL": "x"})


# --------------------------------------------------------------------------------------------------
# CNI data


def test_cni_configs_carry_the_pod_cidr() -> None:
    plan = plan_of("single-master", "cluster.podSubnet=10.200.0.0/16")
    docs = bootstrap.cni.calico_documents(plan)
    assert [d["kind"] for d in docs] == ["Installation", "APIServer"]
    pool = docs[0]["spec"]["calicoNetwork"]["ipPools"][0]  # type: ignore[index]
    assert pool["cidr"] == "10.200.0.0/16" and pool["blockSize"] == 26
    installation = bootstrap.cni.cni_config_file(plan, "amd64")
    assert installation is not None and installation.path == "/etc/bake/cni/calico-installation.yaml"
    assert list(yaml.safe_load_all(installation.content)) == docs

    plan = plan_of("single-master", "cluster.podSubnet=10.200.0.0/16", "cluster.cni=flannel")
    kustomization = bootstrap.cni.cni_config_file(plan, "amd64")
    assert (
        kustomization is not None and _env(plan, plan.node("cp-1"))["BAKE_CNI_CONFIG"] == kustomization.path
    )
    # the pod network in flannel's ConfigMap, applied through the real kubectl: tests/test_cni.py
    assert yaml.safe_load(kustomization.content)["resources"] == ["kube-flannel.yml"]
    (patch,) = yaml.safe_load(kustomization.content)["patches"]
    added = [op["value"] for op in json.loads(patch["patch"]) if op["op"] == "add"]
    assert [json.loads(v)["Network"] for v in added] == ["10.200.0.0/16"]

    plan = plan_of("single-master", "cluster.cni=cilium", "defaults.arch=arm64")
    values = bootstrap.cni.cni_config_file(plan, "arm64")
    assert values is not None and yaml.safe_load(values.content)["ipam"] == {"mode": "kubernetes"}
    env = _env(plan, plan.node("cp-1"))
    assert env["BAKE_CNI_URLS"].split() == [
        f"{bootstrap.cni.CILIUM_CLI_BASE_URL}/{bootstrap.cni.CILIUM_CLI_VERSION}/cilium-linux-arm64.tar.gz",
        f"{bootstrap.cni.CILIUM_CLI_BASE_URL}/{bootstrap.cni.CILIUM_CLI_VERSION}/cilium-linux-arm64.tar.gz.sha256sum",
    ]
    assert bootstrap.cni.cni_config_file(plan_of("single-master", "cluster.cni=none"), "amd64") is None


def test_cni_mirror_is_overridable() -> None:
    source = bootstrap.cni.CniSource(calico_base_url="http://mirror.lan/calico/")
    assert source.urls(load_profile("single-master").cluster.cni, "amd64") == (
        f"http://mirror.lan/calico/{bootstrap.cni.CALICO_VERSION}/manifests/operator-crds.yaml",
        f"http://mirror.lan/calico/{bootstrap.cni.CALICO_VERSION}/manifests/tigera-operator.yaml",
    )


# --------------------------------------------------------------------------------------------------
# running the script in a sandbox

STUB = r"""#!/bin/bash
# stand-in recorded by the bootstrap sandbox test
name=$(basename "$0")
# the log's mode whenever something may write into it: at each log line (log() calls date) and each
# stand-in's call; date itself is the real one and is not recorded as a call
mode=$(stat -c '%a' /var/log/bake/bootstrap.log 2>/dev/null) || mode=none
echo "$mode" >>/var/tmp/stub-log-modes
[[ $name == date ]] && exec /usr/bin/date "$@"
printf '%s\n' "$name $*" >>/var/tmp/stub-calls.log
case "$name" in
containerd)
    version=v2.1.4
    [[ -e /run/stub-containerd-version ]] && version=$(cat /run/stub-containerd-version)
    if [[ ${1:-} == --version ]]; then
        # a whole `containerd --version` line, or only the version in the v2 module's line
        if [[ $version == containerd\ * ]]; then echo "$version"; else
            echo "containerd github.com/containerd/containerd/v2 $version deadbeef"; fi
    fi
    ;;
kubeadm)
    case ${1:-} in
    version) echo "v${STUB_KUBEADM_VERSION:-1.37.2}" ;;
    reset)  # the real kubeadm when a test names it, else a TEST DOUBLE of what reset deletes (cleanupnode.go)
        if [[ -s /run/stub-real-kubeadm ]]; then exec "$(</run/stub-real-kubeadm)" "$@"; fi
        for d in /etc/kubernetes/manifests /var/lib/kubelet /etc/kubernetes/pki; do
            if [[ -d $d ]]; then find "$d" -mindepth 1 -delete; fi
        done
        for f in admin super-admin kubelet bootstrap-kubelet controller-manager scheduler; do
            rm -f "/etc/kubernetes/$f.conf"
        done
        ;;
    init | join)  # TEST DOUBLE: kubeadm's preflight on leftovers (checks.go), then what a run leaves
        if [[ $1 == init && -s /run/stub-real-kubeadm-init ]]; then  # the real one, in a dry run
            exec "$(</run/stub-real-kubeadm-init)" "$@" --dry-run --ignore-preflight-errors=all
        fi
        checked=/etc/kubernetes/manifests/kube-apiserver.yaml  # init: its own manifests
        [[ $1 == join ]] && checked=/etc/kubernetes/bootstrap-kubelet.conf  # join: FileAvailable checks
        if [[ -e $checked ]]; then echo "[ERROR FileAvailable]: $checked already exists" >&2; exit 1; fi
        mkdir -p /etc/kubernetes/manifests /var/lib/kubelet/pki /etc/kubernetes/pki
        echo leftover >/var/lib/kubelet/pki/kubelet-client-current.pem
        if [[ $1 == join ]]; then echo leftover >/etc/kubernetes/bootstrap-kubelet.conf; fi
        if [[ $1 == init ]]; then echo leftover >/etc/kubernetes/manifests/kube-apiserver.yaml; fi
        if [[ $1 == init ]]; then  # TEST DOUBLE: what the bootstrap-token and show-join-command phases print
            token='<value withheld>'  # cmd/kubeadm/app/cmd/util/join.go with --skip-token-print
            if [[ " $* " != *" --skip-token-print "* ]]; then
                token=$(sed -n 's/^- token: *//p' /run/kubeadm/kubeadm.yaml)
                echo "[bootstrap-token] Using token: $token"  # phases/init/bootstraptoken.go
            fi
            echo "kubeadm join 10.77.0.10:6443 --token $token --discovery-token-ca-cert-hash sha256:00"
            # as the real one, once the control plane answers (phases/uploadconfig); a pod network applied
            # beside kubeadm starts on that line: kubeadm's remaining phases take seconds, the double's
            # none, so it lasts until the apply started (or no such watcher runs)
            cm='ConfigMap "kubeadm-config" in the "kube-system" Namespace'
            echo "[upload-config] Storing the configuration used in $cm"
            beside=/run/bake/cni-beside-kubeadm  # the apply started; a failing run fails once it is done
            [[ -e /run/stub-kubeadm-fail-once ]] && beside=/var/lib/bake/steps/cni.done
            for _ in $(seq 50); do
                [[ -e $beside ]] && break
                pgrep -f "cni.sh beside-kubeadm" >/dev/null || break
                sleep 0.1
            done
        fi
        if [[ -e /run/stub-kubeadm-fail-once ]]; then
            rm -f /run/stub-kubeadm-fail-once
            echo "kubeadm stub: failing" >&2
            exit 1
        fi
        printf '%s\n' "kubeadm $1: exit 0" >>/var/tmp/stub-calls.log  # the order of what ran beside it
        if [[ -e /run/stub-kubeadm-node-exists-once ]]; then
            rm -f /run/stub-kubeadm-node-exists-once
            printf '%s %s\n' "error execution phase kubelet-start: a Node with name \"$(hostname)\"" \
                'and status "Ready" already exists in the cluster. You must delete the existing Node' >&2
            exit 1
        fi
        ;;
    esac
    ;;
kubectl)
    if [[ " $* " == *" get secret bootstrap-token-"* ]]; then  # "<name> <base64 expiration>", or nothing
        if [[ -s /run/stub-token-secret ]]; then cat /run/stub-token-secret; fi
        exit 0
    fi
    if [[ " $* " == *" jsonpath="* ]]; then printf 'True'; fi
    if [[ " $* " == *" daemonset cilium "* ]]; then exit 1; fi
    if [[ " $* " == *" apply "* && -s /run/stub-kubectl-apply-failures ]]; then
        left=$(</run/stub-kubectl-apply-failures)
        echo $((left - 1)) >/run/stub-kubectl-apply-failures
        if ((left > 0)); then echo "Unable to connect to the server: no route to host" >&2; exit 1; fi
    fi
    ;;
curl)
    if [[ " $* " == *"/health "* && -e /run/stub-real-curl ]]; then exec /usr/bin/curl "$@"; fi
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
tar)  # the real tar, but for unpacking the (fake) cilium download
    [[ " $* " == *" -xzf "* ]] || exec /usr/bin/tar "$@"
    ;;
getenforce) echo Enforcing ;;
firewall-cmd) [[ ${1:-} == --state ]] && exit 252 ;;
ufw) echo "Status: inactive" ;;
esac
exit 0
"""
STUBBED = (
    "modprobe", "sysctl", "swapoff", "setenforce", "getenforce", "containerd", "kubeadm",
    "kubectl", "curl", "gpg", "apt-get", "apt-mark", "dnf", "firewall-cmd", "ufw", "tar", "sha256sum",
    "cilium", "date",
)  # fmt: skip
# TEST DOUBLE for systemctl: records every call as the stand-ins do, keeps `mask --runtime` as systemd
# does (a /dev/null link in /run/systemd/system, gone at a reboot), and runs the bake units for real in
# the way systemd does what they use: Requires= first (in order, a failed one fails the start), then
# ConditionPathExists= (a failed condition skips the unit, which does not fail what requires it),
# ExecCondition= (exit 1..254 skips, 255 fails), ExecStartPre=, ExecStart= (a failure fails the unit);
# RemainAfterExit=yes keeps a unit that succeeded active, and starting an active unit does nothing.
# Drop-ins (<unit>.d/*.conf) add to the lists, an empty assignment empties one; the command prefixes
# '+' (no sandboxing) and '-' (failure ignored); BindReadOnlyPaths= through a private mount namespace
# made from the sandbox's (nsenter), as systemd makes it from the host's, whoever asked for the start.
# Their output goes to $BAKE_STUB_JOURNAL (the journal).
SYSTEMCTL = r"""#!/usr/bin/python3
import os, shlex, subprocess, sys
from pathlib import Path

UNITS, STATE = Path("/etc/systemd/system"), Path("/run/stub-units")
args = sys.argv[1:]
log = Path("/var/log/bake/bootstrap.log")
if args[:1] != ["__run"]:  # the log's mode at every call of the scripts (as the other stand-ins)
    with open("/var/tmp/stub-log-modes", "a") as f:
        f.write((format(log.stat().st_mode & 0o777, "o") if log.exists() else "none") + "\n")


def bake_unit(name):
    return name.startswith("bake-") and (UNITS / name).is_file()


def load(name):
    conf = {}
    for path in [UNITS / name, *sorted((UNITS / f"{name}.d").glob("*.conf"))]:
        section = ""
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            key, _, value = line.partition("=")
            values = conf.setdefault(f"{section}.{key}", [])
            if value:
                values.append(value)
            else:
                values.clear()
    return conf


def state(name):
    path = STATE / name
    return path.read_text() if path.exists() else "inactive"


def set_state(name, value):
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / name).write_text(value)


def execute(line, binds):
    ignore = line.startswith("-")
    line = line.lstrip("-")
    # '+' lifts privilege limits, but systemd 252 (Debian 12, the VM guests) still sets up the unit's
    # bind mounts for such a command: a missing bind source fails it at step NAMESPACE as well
    argv = shlex.split(line.lstrip("+"))
    if binds:
        mounts = " && ".join(f"/bin/mount --bind {shlex.quote(a)} {shlex.quote(b)}" for a, b in binds)
        argv = ["unshare", "-m", "sh", "-c", mounts + ' && exec "$@"', "sh", *argv]
    # as systemd: from the sandbox's own mount namespace, not from the caller's (the driver's may differ)
    argv = ["nsenter", "-m", "-t", os.environ["BAKE_STUB_NS_PID"], *argv]
    journal = open(os.environ.get("BAKE_STUB_JOURNAL", "/dev/null"), "a")
    rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=journal, stderr=journal).returncode
    return 0 if ignore else rc


def start(name):
    if state(name) == "active":
        return 0
    conf = load(name)
    for req in " ".join(conf.get("Unit.Requires", [])).split():
        if start(req) != 0:
            return 1  # a dependency failed: this unit's job fails, the unit stays as it was
    for cond in conf.get("Unit.ConditionPathExists", []):
        if os.path.exists(cond.lstrip("!")) == cond.startswith("!"):
            set_state(name, "inactive")
            return 0
    binds = [b.split(":", 1) for b in " ".join(conf.get("Service.BindReadOnlyPaths", [])).split()]
    for line in conf.get("Service.ExecCondition", []):
        rc = execute(line, binds)
        if 0 < rc < 255:
            set_state(name, "inactive")
            return 0
        if rc:
            set_state(name, "failed")
            return 1
    for line in conf.get("Service.ExecStartPre", []) + conf.get("Service.ExecStart", []):
        if execute(line, binds) != 0:
            set_state(name, "failed")
            return 1
    set_state(name, "active" if conf.get("Service.RemainAfterExit") == ["yes"] else "inactive")
    return 0


if args[:1] == ["start"] and len(args) == 2 and bake_unit(args[1]):
    sys.exit(start(args[1]))
if args[:1] == ["__run"]:  # the sandbox's `run`: one run of a unit's commands, as a (re)start does
    conf = load(args[1])
    for req in " ".join(conf.get("Unit.Requires", [])).split():  # a (re)start job pulls these in first
        if start(req) != 0:
            sys.exit(1)
    binds = [b.split(":", 1) for b in " ".join(conf.get("Service.BindReadOnlyPaths", [])).split()]
    for line in conf.get("Service.ExecStartPre", []) + conf.get("Service.ExecStart", []):
        rc = execute(line, binds)
        if rc:
            sys.exit(rc)
    sys.exit(0)
if args[:1] == ["show"] and "--property=Id,ActiveState" in args:  # a block per unit, as systemctl prints
    units = [a for a in args[1:] if not a.startswith("-")]
    if not all(bake_unit(u) for u in units):
        sys.exit(1)
    print("\n\n".join(f"Id={u}\nActiveState={state(u)}" for u in units))
    sys.exit(0)
with open("/var/tmp/stub-calls.log", "a") as f:
    f.write(" ".join(["systemctl", *args]) + "\n")
if args[:2] in (["mask", "--runtime"], ["unmask", "--runtime"]):
    link = Path("/run/systemd/system") / args[-1]
    if args[0] == "mask":
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/dev/null")
    elif link.is_symlink():
        link.unlink()
"""
FSTAB = "/dev/vda / ext4 rw 0 1\n/swapfile none swap sw 0 0\n"
# The harness's test stop (drop-ins for the bootstrap's units), the same file the VM guests run.
TEST_STOP_SCRIPT = Path(__file__).resolve().parent / "vm" / "guest" / "bake_test_stop.py"
TEST_STOP = "/usr/bin/python3 /usr/local/sbin/bake-test-stop install --no-reload"
"""Scenario line: install the test stop (add options: after-waits, wait-seconds=N, attempts=N)."""

DRIVER = (
    r"""#!/bin/bash
# Runs inside `unshare -m`: nothing written here reaches the host's /etc, /var, /usr/local or /run.
set -euo pipefail
S=$1
"""
    + OVERLAYS
    + r"""mount -t tmpfs tmpfs /run
mkdir -p /usr/local/sbin /usr/local/bin
for c in $STUBBED; do install -m 0755 "$S/stub" "/usr/local/sbin/$c"; done
install -m 0755 "$S/systemctl" /usr/local/sbin/systemctl
install -m 0755 "$S/bake-test-stop" /usr/local/sbin/bake-test-stop
export BAKE_STUB_JOURNAL="$S/out/stdout.log" BAKE_STUB_NS_PID=$$
cp "$S/fstab" /etc/fstab
# cloud-init's write_files, from the node's user-data; then runcmd before it starts the units (the
# first-boot archive unpacked by the real tar), as on the node
while IFS= read -r -d '' path && IFS= read -r -d '' mode; do
    install -D -m "$mode" "$S/files/${path#/}" "$path"
done <"$S/files.list"
PATH=/usr/bin:/bin bash -e "$S/runcmd.sh"  # the real tar: the stand-ins are for the scripts
mkdir -p "$S/out/installed"  # the program as installed, before any run (test_sandbox_installs_...)
(cd / && find usr/local/lib/bake usr/local/sbin etc/systemd/system -maxdepth 3 -type f -path '*bake*' \
    -print0 | /usr/bin/tar --null -T - -cf - | /usr/bin/tar -C "$S/out/installed" -xpf -)
sockets() {  # what containerd / CRI-O would create when (re)started
    mkdir -p /run/containerd /run/crio
    "$PY" -c 'import socket,sys; [socket.socket(socket.AF_UNIX).bind(p) for p in sys.argv[1:]]' \
        /run/containerd/containerd.sock /run/crio/crio.sock
}
sockets
run() {
    local rc=0
    echo "=== run" >>/var/tmp/stub-calls.log
    # one run of bake-bootstrap.service (with the drop-ins a test stop may add)
    /usr/local/sbin/systemctl __run bake-bootstrap.service >>"$S/out/stdout.log" 2>&1 || rc=$?
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
# modes of the log and the state files as the script left them (cp -a keeps the file's, not its dir's)
stat -c '%a %n' /var/log/bake /var/lib/bake /var/log/bake/* /var/lib/bake/*.out >"$S/out/modes" 2>/dev/null ||
    true
cp -a /etc/fstab "$S/out/fstab"
cp -a /run/. "$S/out/run/" 2>/dev/null || true
cp -a /var/tmp/stub-calls.log "$S/out/calls.log" 2>/dev/null || true
cp -a /var/tmp/stub-log-modes "$S/out/log-modes" 2>/dev/null || true
"""
)


class Sandbox:
    def __init__(self, root: Path, rendered: cloudinit.RenderedNode, plan: ClusterPlan | None = None) -> None:
        self.root = root
        self.plan = plan
        self.rendered = rendered
        (root / "out").mkdir(parents=True)
        (root / "stub").write_text(STUB)
        (root / "systemctl").write_text(SYSTEMCTL)
        (root / "bake-test-stop").write_bytes(TEST_STOP_SCRIPT.read_bytes())
        (root / "fstab").write_text(FSTAB)
        (root / "driver.sh").write_text(DRIVER)
        listing = b""
        doc = yaml.safe_load(rendered.user_data)
        for entry in doc["write_files"]:
            target = root / "files" / entry["path"].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(write_file_content(entry))
            listing += entry["path"].encode() + b"\0" + entry["permissions"].encode() + b"\0"
        (root / "files.list").write_bytes(listing)
        # runcmd but its systemctl calls (the scenario drives the units itself)
        commands = [shlex.join(c) for c in doc["runcmd"] if c[0] != "systemctl"]
        (root / "runcmd.sh").write_text("".join(f"{c}\n" for c in commands))

    def set_env(self, **values: str) -> None:
        """Override values of the node's env file (shorter waits and delays for a test)."""
        env_file = self.root / "files" / bootstrap.layout.ENV_PATH.lstrip("/")
        lines = env_file.read_text().splitlines()
        for name, value in values.items():
            index = next(i for i, line in enumerate(lines) if line.startswith(f"{name}="))
            lines[index] = f"{name}={shlex.quote(value)}"
        env_file.write_text("\n".join(lines) + "\n")

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
        """The stand-ins' calls, one list per run of the script (a scenario's calls before the first run,
        e.g. the test stop's `systemctl daemon-reload`, are not the script's)."""
        out: list[list[str]] = []
        for line in self.text("calls.log").splitlines():
            if line == "=== run":
                out.append([])
            elif out:
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
    missing("no python3 to create a unix socket")


@pytest.fixture(scope="module")
def can_sandbox(tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("probe")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        missing("the bootstrap sandbox needs root and unshare (private mount namespace)")
    if any(str(tmp).startswith(p) for p in ("/etc", "/var", "/usr/local", "/run")):
        missing("the temporary directory is inside a sandboxed tree")
    probe = "mkdir -p $0/u $0/w && mount -t overlay overlay -o lowerdir=/etc,upperdir=$0/u,workdir=$0/w /etc"
    proc = subprocess.run(["unshare", "-m", "sh", "-c", probe, str(tmp)], capture_output=True)
    if proc.returncode != 0:
        missing(f"no overlay mounts in a private mount namespace here: {proc.stderr!r}")


def _sandbox(tmp_path: Path, profile: str, node: str, *sets: str) -> Sandbox:
    plan = plan_of(profile, "cluster.packages.mode=prebaked", *sets)
    return Sandbox(tmp_path / "sb", _render(plan, plan.node(node)), plan)


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
        {TEST_STOP}
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
@pytest.mark.parametrize("node", ["cp-1", "worker-1"])
def test_sandbox_installs_the_program_from_the_archive(can_sandbox: None, tmp_path: Path, node: str) -> None:
    """The sandbox lays out write_files and runs runcmd's tar as the node does: the program files it
    then holds are the rendered ones (content and mode), the archive itself beside them."""
    sb = _sandbox(tmp_path, "ha-stacked", node, "cluster.seed.reportUrl=http://10.77.0.1:8080").run("")
    root = sb.root / "out" / "installed"
    found = {}
    for path in root.rglob("*"):
        name = "/" + str(path.relative_to(root))
        program = name.startswith("/usr/local/") or name.startswith("/etc/systemd/system/bake-")
        if path.is_file() and program and name != "/usr/local/sbin/bake-test-stop":
            found[name] = (path.read_bytes(), path.stat().st_mode & 0o7777)
    expected = {f.path: (f.content, f.mode) for f in sb.rendered.files if archive.in_archive(f)}
    assert len(expected) >= 15 and "/usr/local/lib/bake/bootstrap/report.sh" in expected
    assert found.pop(archive.ARCHIVE_PATH)[1] == 0o644
    assert found == expected


@pytest.mark.integration
def test_init_runs_to_done(can_sandbox: None, tmp_path: Path) -> None:
    sb = _sandbox(tmp_path, "ha-stacked", "cp-1").run("run\nrun\n")
    assert sb.rcs == [0, 0], sb.text("stdout.log")
    calls = sb.calls
    init = calls.index(INIT_CALL)
    assert calls.index("systemctl enable --no-reload kubelet.service") < init
    assert any("apply --server-side" in c and "tigera-operator.yaml" in c for c in calls[init:])
    assert any(c.endswith("apply -f /etc/bake/cni/calico-installation.yaml") for c in calls[init:])
    assert (sb.root / "out/state/bootstrap.done").exists()
    assert sb.text("run/cluster-api/bootstrap-success.complete") == "success\n"
    assert "already done" in sb.text("bootstrap.log").splitlines()[-1]
    # kube-vip was switched from super-admin.conf to admin.conf after init (files seen through the overlay).
    manifest = sb.root / "upper/etc/kubernetes/manifests/kube-vip.yaml"
    assert b"/etc/kubernetes/super-admin.conf" not in manifest.read_bytes()
    assert calls.count(INIT_CALL) == 1


@pytest.mark.integration
def test_prep_unpacks_the_key_pack_and_a_reset_gives_its_files_back(
    can_sandbox: None, tmp_path: Path
) -> None:
    """RSA keys ship as their primes (builder.node.compact_keys): the prep unit's drop-in rebuilds them
    with the real python3, once, before kubeadm. A failed init is reset (its stand-in deletes the PKI and the
    kubeconfigs, as kubeadm reset does), and the baked copy puts every packed file back, byte for byte."""
    plan = plan_of("single-master", "cluster.packages.mode=prebaked", "cluster.encryptionAlgorithm=RSA-2048")
    rendered = rendered_node(plan, "cp-1")
    assert set(compact_keys.unpacker_files()) <= set(rendered.files)
    (entry,) = [e for e in yaml.safe_load(rendered.user_data)["write_files"] if e["path"] == paths.KEY_PACK]
    packed = [f["path"] for f in json.loads(entry["content"])["files"]]
    assert paths.ADMIN_CONF in packed and f"{paths.PKI_DIR}/ca.key" in packed
    sb = Sandbox(tmp_path / "sb", rendered, plan).run("touch /run/stub-kubeadm-fail-once\nrun\nrun\n")
    assert sb.rcs == [1, 0], sb.text("stdout.log")
    assert "kubeadm reset -f --cri-socket unix:///var/run/containerd/containerd.sock" in sb.runs[1]
    assert (
        sb.text("stdout.log").count(
            f"keypack: wrote {len(packed)} of {len(packed)} files from {paths.KEY_PACK}"
        )
        == 1
    )
    want = {f.path: f for f in rendered.files}
    for path in packed:
        on_disk = sb.root / "upper" / path.lstrip("/")
        assert on_disk.read_bytes() == want[path].content, path
        assert on_disk.stat().st_mode & 0o7777 == want[path].mode == 0o600, path


@pytest.mark.integration
def test_the_pod_network_is_applied_beside_kubeadm_init(can_sandbox: None, tmp_path: Path) -> None:
    sb = _sandbox(tmp_path, "single-master", "cp-1").run("run\n")
    assert sb.rcs == [0], sb.text("stdout.log")
    calls = sb.calls
    applies = [i for i, c in enumerate(calls) if c.startswith("kubectl") and " apply " in c]
    # once kubeadm printed its upload-config line, before it ended; the cni phase had nothing left
    init, ended = calls.index(INIT_CALL), calls.index("kubeadm init: exit 0")
    assert applies and init < applies[0] and applies[-1] < ended
    log = sb.text("bootstrap.log")
    assert "kubeadm init has its admin.conf client: applying the pod network beside it" in log
    assert "step cni: already done" in log
    assert (sb.root / "out/state/bootstrap.done").exists()


@pytest.mark.integration
def test_a_failed_kubeadm_init_applies_the_pod_network_again(can_sandbox: None, tmp_path: Path) -> None:
    """The first try applied the pod network beside kubeadm, then kubeadm failed: the reset wipes the
    cluster's state, so the next try applies it again."""
    sb = _sandbox(tmp_path, "single-master", "cp-1").run("touch /run/stub-kubeadm-fail-once\nrun\nrun\n")
    assert sb.rcs == [1, 0], sb.text("stdout.log")
    assert any(c.startswith("kubectl") and " apply " in c for c in sb.runs[0])
    second = sb.runs[1]
    reset = second.index("kubeadm reset -f --cri-socket unix:///var/run/containerd/containerd.sock")
    applies = [i for i, c in enumerate(second) if c.startswith("kubectl") and " apply " in c]
    assert applies and reset < second.index(INIT_CALL) < applies[0] < second.index("kubeadm init: exit 0")
    assert (sb.root / "out/state/bootstrap.done").exists()


@pytest.mark.integration
def test_bootstrap_log_is_root_only_and_never_holds_the_token(can_sandbox: None, tmp_path: Path) -> None:
    """The log (and kubeadm's output kept beside it) is 0600 in 0700 directories from its first byte,
    and kubeadm init runs so that the bootstrap token reaches neither it nor the journal."""
    sb = _sandbox(tmp_path, "ha-stacked", "cp-1").run("run\n")
    assert sb.rcs == [0], sb.text("stdout.log")
    modes = dict(reversed(line.split(" ", 1)) for line in sb.text("modes").splitlines())
    assert modes == {
        "/var/log/bake": "700",
        "/var/lib/bake": "700",
        "/var/log/bake/bootstrap.log": "600",
        "/var/lib/bake/kubeadm-init.out": "600",
    }
    # the log's mode at every log line and every command whose output goes into it
    assert set(sb.text("log-modes").split()) == {"600"}
    log, journal, kept = sb.text("bootstrap.log"), sb.text("stdout.log"), sb.text("state/kubeadm-init.out")
    assert "--token <value withheld>" in kept and "--token <value withheld>" in log  # kubeadm's output
    for text in (log, journal, kept):
        assert TOKEN not in text and TOKEN.split(".")[1] not in text


@pytest.mark.integration
def test_a_wider_log_from_before_is_narrowed_before_use(can_sandbox: None, tmp_path: Path) -> None:
    sb = _sandbox(tmp_path, "ha-stacked", "worker-1").run(
        f"""
        mkdir -p /var/log/bake /var/lib/bake && chmod 0755 /var/log/bake /var/lib/bake
        echo "an earlier boot" >/var/log/bake/bootstrap.log && chmod 0644 /var/log/bake/bootstrap.log
        {TEST_STOP}
        run
        """
    )
    assert sb.rcs == [0], sb.text("stdout.log")
    assert sb.text("bootstrap.log").startswith("an earlier boot\n")
    assert set(sb.text("log-modes").split()) == {"600"}
    assert "700 /var/log/bake" in sb.text("modes") and "700 /var/lib/bake" in sb.text("modes")


@pytest.mark.integration
def test_join_order_and_retry_after_failure(can_sandbox: None, tmp_path: Path) -> None:
    sb = _sandbox(tmp_path, "ha-stacked", "cp-3")
    baked = {f.path: f.content for f in _render(sb.plan, sb.plan.node("cp-3")).files}
    sb.run(
        """
        touch /run/stub-kubeadm-fail-once
        run
        reboot
        run
        cd /etc/kubernetes && cp pki/ca.key admin.conf manifests/kube-vip.yaml "$S/out/"
        """
    )
    assert sb.rcs == [1, 0], sb.text("stdout.log")
    assert any(c.startswith("kubeadm join") for c in sb.runs[0])
    calls = sb.runs[1]
    join = calls.index("kubeadm join --config /run/kubeadm/kubeadm-join-config.yaml")  # no ignored checks
    reset = calls.index("kubeadm reset -f --cri-socket unix:///var/run/containerd/containerd.sock")
    # The stale Node (if the first try registered it) goes before the join; kubeadm refuses a Ready one.
    delete = next(
        i for i, c in enumerate(calls) if c.startswith("kubectl") and " delete node cp-3 " in f"{c} "
    )
    assert reset < delete < join
    readyz = [c for c in calls[:join] if c.startswith("curl") and "/readyz" in c]
    assert readyz and "https://10.77.0.10:6443/readyz" in readyz[0]
    peers = [c for c in calls[:join] if "jsonpath" in c]
    pods = [c.split()[c.split().index("pod") + 1] for c in peers]
    assert pods == ["etcd-cp-1", "kube-apiserver-cp-1", "etcd-cp-2", "kube-apiserver-cp-2"]
    # kubeadm reset deleted the baked PKI, kubeconfig and static pod: they are back, byte for byte.
    for path in (
        "/etc/kubernetes/pki/ca.key",
        "/etc/kubernetes/admin.conf",
        "/etc/kubernetes/manifests/kube-vip.yaml",
    ):
        assert (sb.root / "out" / Path(path).name).read_bytes() == baked[path]
    assert (sb.root / "out/state/bootstrap.done").exists()
    assert not (sb.root / "out/state/baked-files.tar").exists()  # secrets do not outlive the bootstrap


@pytest.mark.integration
def test_failed_run_retries_with_backoff_in_the_same_boot(can_sandbox: None, tmp_path: Path) -> None:
    """systemd restarts a failed run (Restart=on-failure); here `run` twice plays that restart."""
    sb = _sandbox(tmp_path, "single-master", "worker-1")
    sb.set_env(BAKE_RETRY_BASE_SECONDS="1")
    sb.run("touch /run/stub-kubeadm-fail-once\nrun\nrun\n")
    assert sb.rcs == [1, 0], sb.text("stdout.log")
    log = sb.text("bootstrap.log")
    assert "attempt 1 failed (exit 1); bake-bootstrap.service runs it again" in log
    assert "attempt 2 of 8 in this boot (the previous one failed): retrying in 1s" in log
    # the failed phase, and only it, is named with where its output is
    assert "phase kubeadm failed: journalctl -b -u bake-bootstrap-kubeadm.service" in log
    assert log.count(" failed: journalctl ") == 1
    second = sb.runs[1]
    assert second.index(
        "kubeadm reset -f --cri-socket unix:///var/run/containerd/containerd.sock"
    ) < second.index("kubeadm join --config /run/kubeadm/kubeadm-join-config.yaml")
    assert (sb.root / "out/state/bootstrap.done").exists()
    assert not (sb.root / "out/run/bake/bootstrap.attempts").exists()


@pytest.mark.integration
def test_a_skipped_phase_leaves_the_node_not_done(can_sandbox: None, tmp_path: Path) -> None:
    """A phase unit whose condition does not hold is skipped by systemd, which is not a failure: the
    driver reads every phase's state and does not mark the node done."""
    sb = _sandbox(tmp_path, "single-master", "worker-1")
    drop_in = "/etc/systemd/system/bake-bootstrap-runtime.service.d"
    sb.run(
        f"mkdir -p {drop_in}\nprintf '[Unit]\\nConditionPathExists=/nowhere\\n' >{drop_in}/skip.conf\nrun\n"
    )
    assert sb.rcs == [0], sb.text("stdout.log")
    log = sb.text("bootstrap.log")
    assert (
        "phase runtime did not run (bake-bootstrap-runtime.service is inactive: a condition of the unit did "
        "not hold): the bootstrap is not done"
    ) in log
    assert log.count(" did not run ") == 1
    assert not (sb.root / "out/state/bootstrap.done").exists()


@pytest.mark.integration
def test_backoff_doubles_and_the_last_attempt_gives_up(can_sandbox: None, tmp_path: Path) -> None:
    sb = _sandbox(tmp_path, "single-master", "worker-1")
    sb.set_env(
        BAKE_WAIT_ENDPOINT_SECONDS="1", BAKE_RETRY_BASE_SECONDS="1", BAKE_RETRY_MAX_SECONDS="2",
        BAKE_RETRY_MAX_ATTEMPTS="3",
    )  # fmt: skip
    sb.run("touch /run/stub-endpoint-down\nrun\nrun\nrun\nrun\n")
    # 75 = RestartPreventExitStatus: systemd stops restarting; a manual restart counts from 1 again.
    assert sb.rcs == [1, 1, bootstrap.layout.GIVE_UP_STATUS, 1], sb.text("stdout.log")
    log = sb.text("bootstrap.log")
    assert "attempt 2 of 3 in this boot (the previous one failed): retrying in 1s" in log
    assert "attempt 3 of 3 in this boot (the previous one failed): retrying in 2s" in log
    assert "giving up after 3 failed attempts in this boot" in log
    assert log.count("attempt 2 of 3") == 1
    assert not any(c.startswith("kubeadm join") for c in sb.calls)


@pytest.mark.integration
def test_join_refused_for_a_registered_node_recovers(can_sandbox: None, tmp_path: Path) -> None:
    sb = _sandbox(tmp_path, "single-master", "worker-1")
    sb.set_env(BAKE_RETRY_BASE_SECONDS="1")
    sb.run("touch /run/stub-kubeadm-node-exists-once\nrun\nrun\n")
    assert sb.rcs == [1, 0], sb.text("stdout.log")
    assert "still registered and Ready from an earlier attempt" in sb.text("bootstrap.log")
    second = sb.runs[1]
    assert second.index(
        "kubeadm reset -f --cri-socket unix:///var/run/containerd/containerd.sock"
    ) < second.index("kubeadm join --config /run/kubeadm/kubeadm-join-config.yaml")
    out = sb.root / "out/state/kubeadm-join.out"
    assert out.stat().st_mode & 0o777 == 0o600


@pytest.mark.integration
def test_kubectl_through_the_endpoint_is_retried(can_sandbox: None, tmp_path: Path) -> None:
    sb = _sandbox(tmp_path, "single-master", "cp-1").run("echo 1 >/run/stub-kubectl-apply-failures\nrun\n")
    assert sb.rcs == [0], sb.text("stdout.log")
    assert "waiting for kubectl apply --server-side" in sb.text("bootstrap.log")
    assert sum(" apply --server-side " in f"{c} " for c in sb.calls) == 2


@pytest.mark.integration
@pytest.mark.parametrize(
    "stop", ["", f"{TEST_STOP} after-waits wait-seconds=1 attempts=1", f"{TEST_STOP} interrupt-kubeadm"]
)
def test_units_pass_systemd_analyze_verify(can_sandbox: None, tmp_path: Path, stop: str) -> None:
    """Every unit of the bootstrap, as baked and with the harness's test drop-ins (a stop, or the kubeadm
    interrupter, whose unit is verified too)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    plan = plan_of("single-master", "cluster.packages.mode=prebaked", "cluster.join=token")
    sb = Sandbox(tmp_path / "sb", _render(plan, plan.node("cp-1")), plan)
    units = [bootstrap.layout.UNIT_PATH]
    units += [bootstrap.units.phase_unit_path(p) for p in bootstrap.layout.PHASES]
    units += [bootstrap.layout.JOIN_TOKEN_SERVICE_PATH, bootstrap.layout.JOIN_TOKEN_TIMER_PATH]
    sb.run(
        f"""
        {stop}
        rc=0
        systemd-analyze verify {" ".join(units)} >"$S/out/verify.log" 2>&1 || rc=$?
        echo "$rc" >"$S/out/verify.rc"
        cat /etc/systemd/system/bake-bootstrap-wait.service.d/*.conf >"$S/out/wait.txt" 2>/dev/null || true
        d=/etc/systemd/system
        cat $d/bake-bootstrap-kubeadm.service.d/*.conf >"$S/out/kubeadm.txt" 2>/dev/null || true
        if [ -e $d/bake-test-interrupt.service ]; then
            systemd-analyze verify $d/bake-test-interrupt.service >>"$S/out/verify.log" 2>&1 ||
                echo 1 >"$S/out/verify.rc"
        fi
        """
    )
    assert sb.text("verify.rc").strip() == "0", sb.text("verify.log")
    assert "bake-" not in sb.text("verify.log"), sb.text("verify.log")
    interrupt = "interrupt-kubeadm" in stop
    assert ("ExecCondition=" in sb.text("wait.txt")) == bool(stop and not interrupt), sb.text("wait.txt")
    wants = "Wants=bake-test-interrupt.service" in sb.text("kubeadm.txt")
    assert wants == interrupt, sb.text("kubeadm.txt")


@pytest.mark.integration
def test_worker_gives_up_on_a_dead_endpoint(can_sandbox: None, tmp_path: Path) -> None:
    sb = _sandbox(tmp_path, "single-master", "worker-1")
    sb.set_env(BAKE_WAIT_ENDPOINT_SECONDS="1")
    sb.run("touch /run/stub-endpoint-down\nrun\n")
    assert sb.rcs == [1]
    assert not any(c.startswith("kubeadm join") for c in sb.calls)
    log = sb.text("bootstrap.log")
    assert "did not become ready; will retry" in log


@pytest.mark.integration
def test_etcd_member_kubelet_held_until_the_runtime_is_configured(can_sandbox: None, tmp_path: Path) -> None:
    """The kubelet package's postinst may start the kubelet, with the etcd drop-in and static pod
    already in place: it must not run before containerd has its configuration."""
    plan = plan_of("ha-external-etcd")  # packages.mode repos: the packages are installed on the node
    sb = Sandbox(tmp_path / "sb", _render(plan, plan.node("etcd-1"))).run("run\nreboot\nrun\n")
    assert sb.rcs == [0, 0], sb.text("stdout.log")
    calls = sb.runs[0]
    stop = calls.index("systemctl stop kubelet.service")
    hold = calls.index("systemctl mask --runtime --no-reload kubelet.service")  # stopped, then masked
    assert stop < hold
    install = next(i for i, c in enumerate(calls) if c.startswith("apt-get") and "kubelet=1.37.2-*" in c)
    runtime = calls.index("systemctl restart containerd")
    release = calls.index("systemctl unmask --runtime --no-reload kubelet.service")
    start = calls.index("systemctl restart kubelet")
    enable = calls.index("systemctl enable --no-reload kubelet.service")
    assert hold < install < runtime < release < enable < start
    assert not any(c.startswith("systemctl mask") for c in sb.runs[1])  # the runtime is ready now


@pytest.mark.integration
@pytest.mark.parametrize("offset", [86400, -600])
def test_clock_before_the_certificates_is_reported(can_sandbox: None, tmp_path: Path, offset: int) -> None:
    import time

    sb = _sandbox(tmp_path, "single-master", "worker-1")
    sb.set_env(BAKE_CERTS_NOT_BEFORE=str(int(time.time()) + offset))
    sb.run(f"{TEST_STOP}\nrun\n")
    assert sb.rcs == [0], sb.text("stdout.log")
    warned = "WARNING: the clock (" in sb.text("bootstrap.log")
    assert warned == (offset > 0)
    if warned:
        assert "before this node's certificates are valid" in sb.text("bootstrap.log")


def test_certificates_not_before_is_the_latest_of_the_nodes_certificates(tmp_path: Path) -> None:
    """Against openssl's reading of every certificate the node gets, in files and kubeconfigs."""
    from datetime import UTC, datetime

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    sb, _ = _baked_for_real(tmp_path, "cp-1")
    env = dict(
        line.split("=", 1)
        for line in (sb.root / "files" / bootstrap.layout.ENV_PATH.lstrip("/")).read_text().splitlines()[1:]
    )
    pems: list[bytes] = []
    for f in (sb.root / "files").rglob("*"):
        if f.suffix == ".crt":
            pems.append(f.read_bytes())
        elif f.suffix == ".conf" and b"certificate" in f.read_bytes():
            doc = yaml.safe_load(f.read_bytes())
            for c in doc.get("clusters", []):
                pems.append(base64.b64decode(c["cluster"]["certificate-authority-data"]))
            for u in doc.get("users", []):
                if "client-certificate-data" in u["user"]:
                    pems.append(base64.b64decode(u["user"]["client-certificate-data"]))
    starts = []
    for pem in pems:
        out = subprocess.run(
            [openssl, "x509", "-noout", "-startdate"], input=pem, capture_output=True, check=True
        ).stdout.decode()
        when = datetime.strptime(out.strip().removeprefix("notBefore="), "%b %d %H:%M:%S %Y %Z")
        starts.append(int(when.replace(tzinfo=UTC).timestamp()))
    assert len(starts) > 10
    assert int(env["BAKE_CERTS_NOT_BEFORE"]) == max(starts)


@pytest.mark.integration
def test_etcd_member_restarts_kubelet(can_sandbox: None, tmp_path: Path) -> None:
    sb = _sandbox(tmp_path, "ha-external-etcd", "etcd-2").run("run\n")
    assert sb.rcs == [0], sb.text("stdout.log")
    calls = sb.calls
    assert calls.index(
        "systemctl daemon-reload", calls.index("systemctl enable --no-reload kubelet.service")
    ) < calls.index("systemctl restart kubelet")
    assert not any(c.startswith("kubeadm") for c in calls)
    assert (sb.root / "out/state/bootstrap.done").exists()


@pytest.mark.integration
def test_repos_mode_installs_pinned_packages_after_keys(can_sandbox: None, tmp_path: Path) -> None:
    plan = plan_of("single-master", "cluster.containerRuntime=crio")
    sb = Sandbox(tmp_path / "sb", _render(plan, plan.node("worker-1")))
    sb.run(f"{TEST_STOP}\nrun\n")
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
    values = dict.fromkeys(bootstrap.env.ENV_NAMES, "a b")
    text = bootstrap.env.env_text(values)
    assert f"BAKE_OS={shlex.quote('a b')}\n" in text


def test_role_of_every_node() -> None:
    plan = plan_of("ha-external-etcd")
    roles = {n.name: bootstrap.env.bootstrap_role(n) for n in plan.nodes}
    assert roles["etcd-3"] is BootstrapRole.ETCD
    assert roles["cp-1"] is BootstrapRole.INIT
    assert roles["cp-3"] is BootstrapRole.JOIN_CONTROL_PLANE
    assert roles["worker-2"] is BootstrapRole.WORKER


@pytest.mark.integration
@pytest.mark.parametrize("os_name", ["ubuntu-24.04", "rocky-9"])
def test_skewed_worker_installs_the_clusters_kubeadm_and_its_own_kubelet(
    can_sandbox: None, tmp_path: Path, os_name: str
) -> None:
    plan = plan_of("single-master", f"defaults.os={os_name}", "nodes[1].kubernetesVersion=1.35")
    sb = Sandbox(tmp_path / "sb", _render(plan, plan.node("worker-1")))
    sb.run(f"{TEST_STOP}\nrun\n")
    assert sb.rcs == [0], sb.text("stdout.log")
    calls = sb.calls
    if os_name.startswith("ubuntu"):
        install = next(c for c in calls if c.startswith("apt-get") and " install " in c and "kubelet=" in c)
        assert {"kubelet=1.35.0-*", "kubeadm=1.37.2-*", "kubectl=1.37.2-*"} <= set(install.split())
        keys = [c for c in calls if c.startswith("curl") and "pkgs.k8s.io" in c]
        assert [k.split()[-1] for k in keys] == [
            "https://pkgs.k8s.io/core:/stable:/v1.37/deb/Release.key",
            "https://pkgs.k8s.io/core:/stable:/v1.35/deb/Release.key",
        ]
        written = sorted(p.name for p in (sb.root / "upper/etc/apt/sources.list.d").iterdir())
        assert written == ["containerd.list", "kubernetes-kubelet.list", "kubernetes.list"]
    else:
        install = next(c for c in calls if c.startswith("dnf") and "kubelet-" in c)
        words = install.split()
        assert "--setopt=disable_excludes=kubernetes,kubernetes-kubelet" in words
        assert {"kubelet-1.35.0", "kubeadm-1.37.2", "kubectl-1.37.2"} <= set(words)
    assert "kubeadm must be the cluster's version" not in sb.text("bootstrap.log")


@pytest.mark.integration
def test_kubeadm_is_checked_before_the_waits(can_sandbox: None, tmp_path: Path) -> None:
    """The wait unit checks kubeadm first: a kubeadm of another version is named in a warning (asked
    once a boot), a node without kubeadm fails there, before it waits for anything."""
    sb = _sandbox(tmp_path / "other", "ha-stacked", "worker-1").run(
        "export STUB_KUBEADM_VERSION=1.36.0\nrun\n"
    )
    assert sb.rcs == [0], sb.text("stdout.log")
    warning = "kubeadm v1.36.0 is installed; kubeadm must be the cluster's version, 1.37.2"
    assert warning in sb.text("bootstrap.log")
    assert sb.calls.count("kubeadm version -o short") == 1
    assert sb.calls.index("kubeadm version -o short") < min(
        i for i, c in enumerate(sb.calls) if "/readyz" in c
    )

    sb = _sandbox(tmp_path / "none", "ha-stacked", "worker-1").run("rm /usr/local/sbin/kubeadm\nrun\n")
    assert sb.rcs == [1], sb.text("stdout.log")
    assert "kubeadm is not installed (packages.mode=prebaked)" in sb.text("bootstrap.log")
    assert not any(c.startswith("curl") for c in sb.calls), sb.calls


# --------------------------------------------------------------------------------------------------
# host preparation, seen from the outside of the script

# `containerd --version` as each release line prints it, and the config schema that line reads
# (containerd docs/cri/config.md: 1.x reads version 2, 2.x reads version 3).
CONTAINERD_LINES = {
    "2.1": (
        "containerd github.com/containerd/containerd/v2 v2.1.4 75cb2b7193e4e490e9fbdc236c0e811ccaba3376",
        3,
    ),
    "1.7": (
        "containerd github.com/containerd/containerd v1.7.24 88bf19b2105c8b17560993bee28a01ddc2f97182",
        2,
    ),
    "debian-1.6": ("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u1", 2),
}
PAUSE_1_37 = "registry.k8s.io/pause:3.10.2"  # kubeadm v1.37 constants.PauseVersion


@pytest.mark.integration
@pytest.mark.parametrize("line", sorted(CONTAINERD_LINES))
def test_host_prep_modules_swap_and_containerd_schema(can_sandbox: None, tmp_path: Path, line: str) -> None:
    version_text, schema = CONTAINERD_LINES[line]
    sb = _sandbox(tmp_path, "ha-stacked", "worker-1").run(
        f"""
        printf '%s\\n' {shlex.quote(version_text)} >/run/stub-containerd-version
        {TEST_STOP}
        run
        """
    )
    assert sb.rcs == [0], sb.text("stdout.log")
    calls = sb.calls
    # kernel modules before the sysctls that need them (net.bridge.* exists only with br_netfilter)
    assert "modprobe overlay" in calls and "modprobe br_netfilter" in calls
    assert calls.index("modprobe br_netfilter") < calls.index("sysctl --system")
    modules = (sb.root / "upper/etc/modules-load.d/k8s.conf").read_text().split()
    assert {"overlay", "br_netfilter"} <= set(modules)
    sysctl = (sb.root / "upper/etc/sysctl.d/k8s.conf").read_text()
    for key in (
        "net.ipv4.ip_forward",
        "net.bridge.bridge-nf-call-iptables",
        "net.bridge.bridge-nf-call-ip6tables",
    ):
        assert re.search(rf"^{re.escape(key)}\s*=\s*1$", sysctl, re.M), key
    # swap off now and for good
    assert "swapoff -a" in calls and "systemctl mask --no-reload swap.target" in calls
    assert "#bake-swap-off# /swapfile none swap sw 0 0" in sb.text("fstab")
    # the containerd config in the schema this containerd reads, with the systemd cgroup driver
    installed = sb.root / "upper/etc/containerd/config.toml"
    config = tomllib.loads(installed.read_text())
    assert config["version"] == schema
    if schema == 3:
        runc = config["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["runc"]
        sandbox = config["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"]
        assert "io.containerd.grpc.v1.cri" not in config["plugins"]
    else:
        cri = config["plugins"]["io.containerd.grpc.v1.cri"]
        runc = cri["containerd"]["runtimes"]["runc"]
        sandbox = cri["sandbox_image"]
        assert "io.containerd.cri.v1.runtime" not in config["plugins"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"]["SystemdCgroup"] is True
    assert sandbox == PAUSE_1_37
    assert calls.index("systemctl restart containerd") > calls.index("containerd --version")
    assert f"installed config schema {schema} as /etc/containerd/config.toml" in sb.text("bootstrap.log")


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["repos", "prebaked"])
def test_containerd_1_under_a_kubelet_that_needs_2(can_sandbox: None, tmp_path: Path, mode: str) -> None:
    plan = plan_of("single-master", f"cluster.packages.mode={mode}")
    sb = Sandbox(tmp_path / "sb", _render(plan, plan.node("worker-1")))
    sb.run(f"echo v1.7.24 >/run/stub-containerd-version\n{TEST_STOP}\nrun\n")
    log = sb.text("bootstrap.log")
    if mode == "repos":  # bake installed it: the repository is wrong, stop before the kubelet runs on it
        assert sb.rcs == [1], sb.text("stdout.log")
        assert "containerd 1.x was installed, and kubelet 1.37.2 needs containerd 2.x" in log
        assert "runtime" not in sb.steps()
    else:  # a prebaked image is its builder's business: say it, go on
        assert sb.rcs == [0], sb.text("stdout.log")
        assert "WARNING: this prebaked image has containerd 1.x; kubelet 1.37.2 needs containerd 2.x" in log


@pytest.mark.integration
def test_default_containerd_comes_from_the_repository_key_first(can_sandbox: None, tmp_path: Path) -> None:
    plan = plan_of("single-master")
    sb = Sandbox(tmp_path / "sb", _render(plan, plan.node("worker-1")))
    sb.run(f"{TEST_STOP}\nrun\n")
    assert sb.rcs == [0], sb.text("stdout.log")
    calls = sb.calls
    key = next(i for i, c in enumerate(calls) if c.startswith("curl") and c.endswith("/linux/ubuntu/gpg"))
    install = next(i for i, c in enumerate(calls) if c.startswith("apt-get") and "containerd.io" in c.split())
    assert key < install
    source = (sb.root / "upper/etc/apt/sources.list.d/containerd.list").read_text()
    assert source.endswith(" https://download.docker.com/linux/ubuntu noble stable\n")


@pytest.mark.integration
def test_el9_keeps_curl_minimal(can_sandbox: None, tmp_path: Path) -> None:
    plan = plan_of("single-master", "defaults.os=rocky-9")
    sb = Sandbox(tmp_path / "sb", _render(plan, plan.node("worker-1")))
    sb.run(f"{TEST_STOP}\nrun\n")
    assert sb.rcs == [0], sb.text("stdout.log")
    installs = [c.split() for c in sb.calls if c.startswith("dnf -y install")]
    assert installs and all("curl" not in words for words in installs)  # a curl command is there


@pytest.mark.integration
def test_test_stop_can_make_the_first_failure_final(can_sandbox: None, tmp_path: Path) -> None:
    sb = _sandbox(tmp_path, "single-master", "worker-1").run(
        f"""
        {TEST_STOP} after-waits wait-seconds=1 attempts=1
        touch /run/stub-endpoint-down
        run
        """
    )
    assert sb.rcs == [bootstrap.layout.GIVE_UP_STATUS], sb.text("stdout.log")
    assert "giving up after 1 failed attempts in this boot" in sb.text("bootstrap.log")


# --------------------------------------------------------------------------------------------------
# join credentials (cluster.join): what each role's seed holds, and the token kept alive in token mode


def _real_files(
    baked: Any, profile: str, node: str, *sets: str
) -> tuple[ClusterPlan, Any, dict[str, NodeFile]]:
    plan, bundle = baked(profile, "cluster.encryptionAlgorithm=ECDSA-P256", *sets)
    n = plan.node(node)
    files = cloudinit.node_files(
        plan, n, pki_files=distribute.node_pki_files(plan, n, bundle), token=bundle.token,
        ca_hash=bundle.discovery_hash,
    )  # fmt: skip
    return plan, bundle, {f.path: f for f in files}


def _env_of(files: dict[str, NodeFile]) -> dict[str, str]:
    return dict(
        shlex.split(line)[0].split("=", 1)
        for line in files[bootstrap.layout.ENV_PATH].content.decode().splitlines()[1:]
    )


def test_certificate_mode_seeds_hold_no_live_token(baked: Any) -> None:
    """Joining nodes hold their own credential and no token; the init node's token is the inert one."""
    for node in ("worker-1", "worker-2"):
        _, bundle, files = _real_files(baked, "single-master", node)
        secret_part = bundle.token.split(".")[1].encode()
        assert not [p for p, f in files.items() if secret_part in f.content], node
        env = _env_of(files)
        assert env["BAKE_JOIN"] == "certificate" and env["BAKE_JOIN_TOKEN_ID"] == ""
        assert env["BAKE_JOIN_CREDENTIAL"] == "/etc/bake/join.conf"
        leaf = bundle.leaf(node, "join.conf").cert
        assert env["BAKE_JOIN_NOT_AFTER"] == str(int(leaf.not_valid_after_utc.timestamp()))
        assert files["/etc/bake/join.conf"].mode == 0o600
    _, bundle, files = _real_files(baked, "single-master", "cp-1")
    env = _env_of(files)
    assert env["BAKE_JOIN_TOKEN_ID"] == "" and env["BAKE_JOIN_NOT_AFTER"] == ""
    assert bootstrap.layout.JOIN_TOKEN_TIMER_PATH not in files
    assert bootstrap.layout.JOIN_TOKEN_SERVICE_PATH not in files
    assert "ttl: 1s" in files["/run/kubeadm/kubeadm.yaml"].content.decode()


def test_token_mode_first_control_plane_keeps_the_token(baked: Any) -> None:
    _, bundle, files = _real_files(baked, "single-master", "cp-1", "cluster.join=token")
    env = _env_of(files)
    assert env["BAKE_JOIN"] == "token" and env["BAKE_JOIN_TOKEN_ID"] == bundle.token.split(".")[0]
    assert "ttl: 24h0m0s" in files["/run/kubeadm/kubeadm.yaml"].content.decode()
    timer = files[bootstrap.layout.JOIN_TOKEN_TIMER_PATH].content.decode()
    service = files[bootstrap.layout.JOIN_TOKEN_SERVICE_PATH].content.decode()
    assert "OnBootSec=" in timer and "OnUnitActiveSec=30min" in timer and "WantedBy=timers.target" in timer
    assert "ExecStart=/usr/local/lib/bake/bootstrap/kubeadm.sh join-token" in service
    assert "ConditionPathExists=/var/lib/bake/steps/kubeadm-init.done" in service
    _, _, worker = _real_files(baked, "single-master", "worker-1", "cluster.join=token")
    assert "/etc/bake/join.conf" not in worker
    assert _env_of(worker)["BAKE_JOIN_TOKEN_ID"] == "" and _env_of(worker)["BAKE_JOIN_NOT_AFTER"] == ""
    assert bundle.token.encode() in worker["/run/kubeadm/kubeadm-join-config.yaml"].content


def _expiring_in(seconds: int, token_id: str) -> str:
    when = datetime.now(UTC) + timedelta(seconds=seconds)
    return (
        f"bootstrap-token-{token_id} "
        + base64.b64encode(when.strftime("%Y-%m-%dT%H:%M:%SZ").encode()).decode()
    )


@pytest.mark.integration
def test_join_token_is_recreated_when_missing_or_expiring(can_sandbox: None, tmp_path: Path) -> None:
    plan = plan_of("single-master", "cluster.packages.mode=prebaked", "cluster.join=token")
    sb = Sandbox(tmp_path / "sb", _render(plan, plan.node("cp-1")), plan)
    token_id = TOKEN.split(".")[0]
    sb.run(
        f"""
        join_token() {{
            echo "=== run" >>/var/tmp/stub-calls.log
            /usr/local/lib/bake/bootstrap/kubeadm.sh join-token >>"$S/out/stdout.log" 2>&1 ||
                echo "rc=$?" >>"$S/out/stdout.log"
        }}
        mkdir -p /var/lib/bake/steps && touch /var/lib/bake/steps/kubeadm-init.done
        join_token
        printf '%s' {shlex.quote(_expiring_in(7200, token_id))} >/run/stub-token-secret
        join_token
        printf '%s' {shlex.quote(_expiring_in(1800, token_id))} >/run/stub-token-secret
        join_token
        printf 'bootstrap-token-{token_id} ' >/run/stub-token-secret
        join_token
        reboot
        rm -f /run/kubeadm/kubeadm.yaml
        join_token
        """
    )
    assert "rc=" not in sb.text("stdout.log"), sb.text("stdout.log")
    created = [[c for c in run if c.startswith("kubeadm token")] for run in sb.runs]
    recreate = [f"kubeadm token delete {token_id}", "kubeadm token create --config /run/kubeadm/kubeadm.yaml"]
    # missing: created; 2h left: kept; 30 min left: created again; no expiration (TTL 0): kept;
    # after a reboot (/run emptied) the config is restored first, the token is missing again
    assert created == [recreate, [], recreate, [], recreate]
    log = sb.text("bootstrap.log")
    assert "does not exist (expired?): creating it again with the profile's TTL" in log
    assert TOKEN.split(".")[1] not in log  # the token itself is never logged


@pytest.mark.integration
@pytest.mark.parametrize(("offset", "expired"), [(-60, True), (3600, False)])
def test_an_expired_join_credential_is_reported_before_kubeadm(
    can_sandbox: None, tmp_path: Path, offset: int, expired: bool
) -> None:
    sb = _sandbox(tmp_path, "single-master", "worker-1")
    sb.set_env(
        BAKE_JOIN_CREDENTIAL="/etc/bake/join.conf",
        BAKE_JOIN_NOT_AFTER=str(int(datetime.now(UTC).timestamp()) + offset),
    )
    sb.run(
        f"""
        {TEST_STOP} after-waits wait-seconds=1 attempts=1
        run
        """
    )
    log = sb.text("bootstrap.log")
    if expired:
        assert sb.rcs == [bootstrap.layout.GIVE_UP_STATUS], sb.text("stdout.log")
        assert "join credential /etc/bake/join.conf expired at" in log and "re-seed this node" in log
    else:
        assert sb.rcs == [0] and "TEST STOP" in log and "expired" not in log


# --------------------------------------------------------------------------------------------------
# external etcd before kubeadm init, against real etcd members with the baked certificates

# The members listen on the host's loopback: a /24 of 127/8 of this process's own, so that two test runs
# at once on one machine do not take each other's ports.
LOOP = f"127.{20 + os.getpid() % 200}.77"
ETCD_IPS = {"etcd-1": f"{LOOP}.31", "etcd-2": f"{LOOP}.32", "etcd-3": f"{LOOP}.33"}
LOOPBACK_EXTERNAL = (
    "cluster.encryptionAlgorithm=ECDSA-P256",
    *(f"nodes[{i}].ip={ip}" for i, ip in enumerate(ETCD_IPS.values())),
    f"nodes[3].ip={LOOP}.11",
    f"nodes[4].ip={LOOP}.12",
    f"nodes[5].ip={LOOP}.13",
    f"nodes[6].ip={LOOP}.21",
    f"nodes[7].ip={LOOP}.22",
)


LOOPBACK_STACKED = (
    "cluster.encryptionAlgorithm=ECDSA-P256",
    f"cluster.loadBalancer.vip={LOOP}.10",
    *(f"nodes[{i}].ip={LOOP}.{11 + i}" for i in range(3)),
    f"nodes[3].ip={LOOP}.21",
    f"nodes[4].ip={LOOP}.22",
)


def _baked_for_real(
    tmp_path: Path, node: str, profile: str = "ha-external-etcd", *, loopback: bool = True
) -> tuple[Sandbox, Path]:
    """A sandbox of `node` with the real PKI of a fresh bundle, and that bundle on disk; every address
    is on loopback (unless told otherwise, for a binary that reaches nothing), so whatever a real
    binary tries to reach stays on this machine."""
    from datetime import UTC, datetime

    from builder.node import distribute

    addresses = LOOPBACK_EXTERNAL if profile == "ha-external-etcd" else LOOPBACK_STACKED
    plan = plan_of(profile, "cluster.packages.mode=prebaked", *(addresses if loopback else ()))
    bundle, _ = secrets.reconcile(plan, None, now=datetime.now(UTC))
    root = tmp_path / "secrets"
    for rel, data, mode in secrets.bundle_files(bundle, plan):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        (root / rel).chmod(mode)
    target = plan.node(node)
    rendered = cloudinit.render_node(
        plan,
        target,
        pki_files=distribute.node_pki_files(plan, target, bundle),
        token=bundle.token,
        ca_hash=bundle.discovery_hash,
    )
    return Sandbox(tmp_path / "sb", rendered, plan), root


def _start_etcd(secrets_dir: Path, work: Path) -> list[subprocess.Popen[bytes]]:
    etcd = shutil.which("etcd")
    assert etcd
    ca = secrets_dir / "pki/etcd/ca.crt"
    initial = ",".join(f"{m}=https://{ip}:2380" for m, ip in ETCD_IPS.items())
    procs = []
    for m, ip in ETCD_IPS.items():
        d = secrets_dir / "nodes" / m / "etcd"
        procs.append(
            subprocess.Popen(
                [
                    etcd, f"--name={m}", f"--data-dir={work / m}",
                    f"--listen-client-urls=https://{ip}:2379", f"--advertise-client-urls=https://{ip}:2379",
                    f"--listen-peer-urls=https://{ip}:2380", f"--initial-advertise-peer-urls=https://{ip}:2380",
                    f"--initial-cluster={initial}", "--initial-cluster-state=new",
                    "--client-cert-auth=true", f"--trusted-ca-file={ca}",
                    f"--cert-file={d / 'server.crt'}", f"--key-file={d / 'server.key'}",
                    "--peer-client-cert-auth=true", f"--peer-trusted-ca-file={ca}",
                    f"--peer-cert-file={d / 'peer.crt'}", f"--peer-key-file={d / 'peer.key'}",
                    "--listen-metrics-urls=http://127.0.0.1:0",
                ],
                stdout=subprocess.DEVNULL,
                stderr=(work / f"{m}.log").open("wb"),
            )
        )  # fmt: skip
    return procs


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("etcd") is None, reason="Debian's etcd-server is not installed")
def test_init_waits_for_external_etcd_started_after_it(can_sandbox: None, tmp_path: Path) -> None:
    import threading
    import time

    sb, secrets_dir = _baked_for_real(tmp_path, "cp-1")
    sb.set_env(BAKE_WAIT_ETCD_SECONDS="120")
    runner = threading.Thread(target=sb.run, args=("touch /run/stub-real-curl\nrun\n",))
    runner.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        deadline = time.monotonic() + 60
        while "waiting for external etcd member" not in sb.text("stdout.log"):
            assert time.monotonic() < deadline and runner.is_alive(), sb.text("stdout.log")
            time.sleep(0.5)
        assert not any(c.startswith("kubeadm init") for c in sb.calls)  # init has not run meanwhile
        (tmp_path / "etcd").mkdir()
        procs = _start_etcd(secrets_dir, tmp_path / "etcd")  # the etcd machines come up late
        runner.join(timeout=150)
        assert not runner.is_alive()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
    assert sb.rcs == [0], sb.text("stdout.log")
    calls = sb.calls
    init = calls.index(INIT_CALL)
    health = [i for i, c in enumerate(calls) if c.startswith("curl") and c.endswith("/health")]
    assert len(health) > 3 and max(health) < init  # failed tries first, then each member healthy
    for ip in ETCD_IPS.values():
        line = next(calls[i] for i in health if f"https://{ip}:2379/health" in calls[i])
        assert "--cert /etc/kubernetes/pki/apiserver-etcd-client.crt" in line
        assert f"external etcd member https://{ip}:2379 is healthy" in sb.text("bootstrap.log")


@pytest.mark.integration
def test_init_gives_up_on_absent_external_etcd(can_sandbox: None, tmp_path: Path) -> None:
    sb, _ = _baked_for_real(tmp_path, "cp-1")
    sb.set_env(BAKE_WAIT_ETCD_SECONDS="1")
    sb.run("touch /run/stub-real-curl\nrun\n")
    assert sb.rcs == [1], sb.text("stdout.log")
    assert not any(c.startswith("kubeadm") and " init " in f"{c} " for c in sb.calls)
    log = sb.text("bootstrap.log")
    assert f"external etcd member https://{ETCD_IPS['etcd-1']}:2379 is not healthy" in log
    assert "will retry" in log


# --------------------------------------------------------------------------------------------------
# the real kubeadm (v1.37.2 built from upstream), where it has been built


def _real_kubeadm() -> Path | None:
    explicit = os.environ.get("BAKE_K8S_BIN")
    if explicit:
        found = Path(explicit) / "kubeadm"
        return found if found.is_file() else None
    cache = Path(os.environ.get("BAKE_K8S_CACHE", "/var/cache/bake-k8s"))
    for candidate in sorted(cache.glob("*/kubeadm")) + sorted(cache.glob("*/*/bin/kubeadm")):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


REAL_KUBEADM = _real_kubeadm()
needs_real_kubeadm = pytest.mark.skipif(
    REAL_KUBEADM is None, reason="no kubeadm built from upstream (make k8s)"
)


@pytest.mark.integration
@needs_real_kubeadm
def test_real_kubeadm_reset_then_restore_keeps_the_baked_pki(can_sandbox: None, tmp_path: Path) -> None:
    sb, _ = _baked_for_real(tmp_path, "cp-2", "ha-stacked")
    baked = {f.path: f.content for f in sb.rendered.files if f.path.startswith("/etc/kubernetes/")}
    sb.set_env(BAKE_RETRY_BASE_SECONDS="1", BAKE_KUBECTL_RETRY_SECONDS="1")
    sb.run(
        f"""
        echo {REAL_KUBEADM} >/run/stub-real-kubeadm
        touch /run/stub-kubeadm-fail-once
        run
        run
        cd / && tar -cf "$S/out/etc-kubernetes.tar" etc/kubernetes
        """
    )
    assert sb.rcs == [1, 0], sb.text("stdout.log")
    out = sb.text("stdout.log")
    assert "[reset] Deleting contents of directories" in out and "/etc/kubernetes/pki" in out  # the real one
    import tarfile

    with tarfile.open(sb.root / "out/etc-kubernetes.tar") as tar:
        for path, content in baked.items():
            member = tar.extractfile(path.lstrip("/"))
            assert member is not None and member.read() == content, path


@pytest.mark.integration
@needs_real_kubeadm
def test_real_kubeadm_join_preflight_ignores_a_non_empty_manifests_dir(
    can_sandbox: None, tmp_path: Path
) -> None:
    """kubeadm 1.37.2's join preflight has no DirAvailable--etc-kubernetes-manifests check any more,
    so the baked load-balancer static pods need no ignored check. A leftover kubelet.conf makes the
    node checks fail at once (before any discovery), and kubeadm lists every failed check of the batch.
    (A worker's join config: a joining control plane's loopback advertise address is refused before
    preflight, and the node checks are the same for both.)"""
    sb, _ = _baked_for_real(tmp_path, "worker-1", "ha-stacked")
    sb.run(
        f"""
        echo "{LOOP}.21 worker-1" >>/etc/hosts  # kubeadm's Hostname check: answered locally, no DNS
        mkdir -p /etc/kubernetes/manifests && echo '{{}}' >/etc/kubernetes/manifests/kube-vip.yaml
        ls /etc/kubernetes/manifests >"$S/out/manifests.txt"
        echo leftover >/etc/kubernetes/kubelet.conf
        rc=0
        timeout 120 {REAL_KUBEADM} join phase preflight --config /run/kubeadm/kubeadm-join-config.yaml \
            >"$S/out/preflight.log" 2>&1 || rc=$?
        echo "$rc" >"$S/out/preflight.rc"
        """
    )
    assert sb.text("manifests.txt").split() == ["kube-vip.yaml"]
    log = sb.text("preflight.log")
    assert sb.text("preflight.rc").strip() != "0", log
    assert "[ERROR FileAvailable--etc-kubernetes-kubelet.conf]" in log, log
    assert "DirAvailable--etc-kubernetes-manifests" not in log, log


@pytest.mark.integration
@needs_real_kubeadm
def test_real_kubeadm_init_as_the_bootstrap_runs_it_prints_no_token(
    can_sandbox: None, tmp_path: Path
) -> None:
    """The real kubeadm init, with the bootstrap's own command line (plus --dry-run, which changes
    nothing outside the sandbox), accepts it beside --config and prints the join command without the
    token: the log, the journal (the script's output) and the kept output never see it."""
    # kubeadm refuses a loopback advertise address; a dry run reaches nothing, so the profile's own are fine
    sb, secrets_dir = _baked_for_real(tmp_path, "cp-1", "ha-stacked", loopback=False)
    token = (secrets_dir / "token").read_text().strip()
    sb.run(f"echo {REAL_KUBEADM} >/run/stub-real-kubeadm-init\nrun\n")
    assert sb.rcs == [0], sb.text("stdout.log")
    kept = sb.text("state/kubeadm-init.out")
    assert "[dryrun]" in kept and "--token <value withheld>" in kept, kept[-2000:]
    for text in (sb.text("bootstrap.log"), sb.text("stdout.log"), kept):
        assert token not in text
