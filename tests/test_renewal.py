"""Certificate lifecycle: the renewal timer on control planes and etcd members (builder/node/renewal.py,
templates/bootstrap/renew-certs.sh), the expiry calendar of `bake check` and the expiry warning of `bake`.

- which node gets what (hand-written expectations from kubeadm's layout and the placement table), the
  profile's fields and their validation with field paths;
- the script: shellcheck, the env names it reads, and a run inside a private mount namespace with
  stand-ins for kubeadm and crictl (the static pods restart one at a time through their manifests);
- the calendar against the certificates read back from the user-data, the warning on stderr;
- with the real kubeadm (marker realk8s): a control plane baked with short-lived leaves renews them,
  the CA keys stay byte for byte, and a run with nothing due changes nothing; an external etcd member
  renews its own etcd leaves with the etcd CA key of its seed (openssl verifies them) and restarts its
  etcd pod, and the same member without that key reports its due certificates and fails.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from cryptography import x509

from builder import bake as bake_module
from builder import check
from builder.errors import ProfileError
from builder.model import CertificateRenewal
from builder.node import renewal
from builder.pki import certlist, secrets
from builder.plan import build_plan
from builder.resources import templates_dir
from builder.validation.profile import load_profile

from .helpers import OVERLAYS, bake, bundle, disk_files
from .helpers import check as run_check
from .peers import missing, program

SCRIPT = templates_dir() / "bootstrap" / "renew-certs.sh"
PKI = "/etc/kubernetes/pki"


def _plan(profile: str, *sets: str):  # type: ignore[no-untyped-def]
    return build_plan(load_profile(profile, list(sets)))


def _env(plan, name: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    files = {f.path: f for f in renewal.renewal_files(plan, plan.node(name))}
    text = files[renewal.RENEW_ENV_PATH].content.decode()
    out = subprocess.run(
        ["bash", "-c", text + "".join(f'printf "%s\\0" "${n}"\n' for n in renewal.ENV_NAMES)],
        capture_output=True,
        check=True,
    ).stdout.decode()
    return dict(zip(renewal.ENV_NAMES, out.split("\0")[:-1], strict=True))


# --------------------------------------------------------------------------------------------------
# what each node gets


def test_control_planes_and_etcd_members_get_the_timer_workers_do_not() -> None:
    plan = _plan("ha-external-etcd")
    got = {n.name: sorted(f.path for f in renewal.renewal_files(plan, n)) for n in plan.nodes}
    files = sorted(
        [
            "/usr/local/sbin/bake-renew-certs",
            "/etc/bake/renew-certs.env",
            "/etc/bake/kubeadm-renew.yaml",
            "/etc/systemd/system/bake-renew-certs.service",
            "/etc/systemd/system/bake-renew-certs.timer",
        ]
    )
    assert got == {
        **{f"cp-{i}": files for i in (1, 2, 3)},
        **{f"etcd-{i}": files for i in (1, 2, 3)},
        "worker-1": [],
        "worker-2": [],
    }
    off = _plan("ha-external-etcd", "cluster.certificateRenewal.enabled=false")
    assert not [f for n in off.nodes for f in renewal.renewal_files(off, n)]


def test_env_names_what_kubeadm_renews_and_the_ca_key_it_needs() -> None:
    stacked = _env(_plan("single-master"), "cp-1")
    assert stacked["BAKE_RENEW_ALL"] == "yes"
    assert stacked["BAKE_RENEW_BEFORE_SECONDS"] == str(720 * 3600)
    assert stacked["BAKE_RENEW_CERTS"].split() == [
        f"apiserver={PKI}/apiserver.crt={PKI}/ca.key",
        f"apiserver-kubelet-client={PKI}/apiserver-kubelet-client.crt={PKI}/ca.key",
        f"front-proxy-client={PKI}/front-proxy-client.crt={PKI}/front-proxy-ca.key",
        f"apiserver-etcd-client={PKI}/apiserver-etcd-client.crt={PKI}/etcd/ca.key",
        f"etcd-server={PKI}/etcd/server.crt={PKI}/etcd/ca.key",
        f"etcd-peer={PKI}/etcd/peer.crt={PKI}/etcd/ca.key",
        f"etcd-healthcheck-client={PKI}/etcd/healthcheck-client.crt={PKI}/etcd/ca.key",
        f"admin.conf=/etc/kubernetes/admin.conf={PKI}/ca.key",
        f"super-admin.conf=/etc/kubernetes/super-admin.conf={PKI}/ca.key",
        f"controller-manager.conf=/etc/kubernetes/controller-manager.conf={PKI}/ca.key",
        f"scheduler.conf=/etc/kubernetes/scheduler.conf={PKI}/ca.key",
    ]  # kubelet.conf: the kubelet rotates its own
    assert stacked["BAKE_RENEW_PODS"].split() == [
        "etcd=http://127.0.0.1:2381/readyz",
        "kube-apiserver=https://10.77.0.11:6443/livez",
        "kube-controller-manager=https://127.0.0.1:10257/healthz",
        "kube-scheduler=https://127.0.0.1:10259/healthz",
    ]
    plan = _plan("ha-external-etcd")
    member = _env(plan, "etcd-2")
    assert member["BAKE_RENEW_ALL"] == "no"
    assert [e.split("=")[0] for e in member["BAKE_RENEW_CERTS"].split()] == [
        "etcd-server",
        "etcd-peer",
        "etcd-healthcheck-client",
    ]
    assert member["BAKE_RENEW_PODS"] == "etcd=http://127.0.0.1:2381/readyz"
    # members of one kind are staggered, so two never restart their pods at the same time
    assert [_env(plan, f"etcd-{i}")["BAKE_RENEW_STAGGER_SECONDS"] for i in (1, 2, 3)] == ["0", "1800", "3600"]
    vip = _env(_plan("ha-stacked"), "cp-2")["BAKE_RENEW_PODS"].split()
    assert vip[-1] == "kube-vip=", vip  # ha-stacked: kube-vip reads admin.conf
    joining = _env(plan, "cp-2")
    assert "super-admin.conf" not in joining["BAKE_RENEW_CERTS"]
    assert "etcd=" not in joining["BAKE_RENEW_PODS"]


def test_leaf_files_are_kubeadms() -> None:
    """File and signing CA of each leaf as certlist (kubeadm's certlist.go) has them."""
    specs = {
        s.name: s
        for s in (
            certlist.apiserver("n", "10.0.0.1", "10.96.0.0/12", "cluster.local", None, [])[0],
            certlist.apiserver_kubelet_client(),
            certlist.front_proxy_client(),
            certlist.apiserver_etcd_client(),
            certlist.etcd_server("n", "10.0.0.1")[0],
            certlist.etcd_peer("n", "10.0.0.1")[0],
            certlist.etcd_healthcheck_client(),
        )
    }
    cas = certlist.ca_specs()
    assert {n: (s.base, s.ca) for n, s in specs.items()} == dict(renewal.LEAF_FILES)
    assert {n: s.base for n, s in cas.items()} == dict(renewal.CA_KEY_FILES)


def test_renewal_config_holds_no_token() -> None:
    plan = _plan("single-master", "cluster.join=token")
    files = {f.path: f for f in renewal.renewal_files(plan, plan.node("cp-1"))}
    docs = list(yaml.safe_load_all(files[renewal.RENEW_CONFIG_PATH].content))
    assert [d["kind"] for d in docs] == ["InitConfiguration", "ClusterConfiguration"]
    assert "bootstrapTokens" not in docs[0]
    assert docs[1]["certificateValidityPeriod"] == "8760h0m0s"
    assert files[renewal.RENEW_CONFIG_PATH].mode == 0o644


def test_runcmd_enables_the_timer() -> None:
    from builder.node import cloudinit

    plan = _plan("single-master")
    for node, enabled in (("cp-1", True), ("worker-1", False)):
        files = cloudinit.node_files(plan, plan.node(node), pki_files=[], token="abcdef.0123456789abcdef",
                                     ca_hash="sha256:" + "0" * 64)  # fmt: skip
        runcmd = cloudinit.user_data_doc(plan, plan.node(node), files)["runcmd"]
        assert (["systemctl", "enable", "--now", "bake-renew-certs.timer"] in runcmd) is enabled


def test_units() -> None:
    service, timer = renewal.units("Mon *-*-* 03:00:00")
    assert "ExecStart=/usr/local/sbin/bake-renew-certs\n" in service
    assert "ConditionPathExists=/var/lib/bake/bootstrap.done\n" in service  # nothing before the bootstrap
    assert "OnCalendar=Mon *-*-* 03:00:00\n" in timer and "Persistent=true\n" in timer
    assert "WantedBy=timers.target\n" in timer


# --------------------------------------------------------------------------------------------------
# the profile


def _problems(*sets: str) -> list[tuple[str, str]]:
    with pytest.raises(ProfileError) as exc:
        load_profile("single-master", list(sets))
    return [(p.path, p.message) for p in exc.value.problems]


@pytest.mark.parametrize(
    ("sets", "path"),
    [
        (["cluster.certificateValidityPeriod=720h"], "cluster.certificateRenewal.before"),
        (["cluster.certificateValidityPeriod=3h", "cluster.certificateRenewal.before=3h"],
         "cluster.certificateRenewal.before"),
        (["cluster.certificateValidityPeriod=30m"], "cluster.certificateValidityPeriod"),
        (["cluster.certificateRenewal.before=30m"], "cluster.certificateRenewal.before"),
        (["cluster.certificateRenewal.onCalendar=daily\nExecStart=/bin/sh"],
         "cluster.certificateRenewal.onCalendar"),
        # no window of its own any more: the one window is cluster.certificateRenewal.before
        (["cluster.certificateExpiryWarning=720h"], "cluster.certificateExpiryWarning"),
    ],
)  # fmt: skip
def test_lifetimes_are_validated_with_their_path(sets: list[str], path: str) -> None:
    assert path in [p for p, _ in _problems(*sets)]


def test_renewal_window_may_exceed_the_validity_when_renewal_is_off() -> None:
    load_profile(
        "single-master",
        ["cluster.certificateValidityPeriod=240h", "cluster.certificateRenewal.enabled=false"],
    )
    load_profile(
        "single-master", ["cluster.certificateValidityPeriod=3h", "cluster.certificateRenewal.before=1h"]
    )


# --------------------------------------------------------------------------------------------------
# the script


def test_script_passes_shellcheck() -> None:
    proc = subprocess.run(
        [program("shellcheck"), "--shell=bash", "--severity=style", str(SCRIPT)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout


def test_script_reads_exactly_the_env_names() -> None:
    used = set(re.findall(r"\bBAKE_[A-Z0-9_]*[A-Z0-9]", SCRIPT.read_text()))
    assert used == set(renewal.ENV_NAMES)
    assert "ca.key" not in SCRIPT.read_text()  # it never names a CA key itself: the env file does


# A stand-in kubelet and runtime: crictl lists a container for each manifest in the kubelet's directory
# (a new id each time the manifest comes back), kubeadm records its call and rewrites the certificate
# files it was asked for with a later NotAfter (openssl, the test's CA).
CRICTL_STUB = r"""#!/bin/bash
# crictl --runtime-endpoint E ps --name ^POD$ --state running -q
echo "crictl $*" >>/var/tmp/calls
pod=${5#^}; pod=${pod%$}
if [[ -f /etc/kubernetes/manifests/$pod.yaml ]]; then
    [[ -f /var/tmp/id-$pod ]] || date +%s%N >/var/tmp/id-$pod
    cat /var/tmp/id-$pod
else
    rm -f /var/tmp/id-$pod
fi
"""
STUBS = (
    f"""
cat >/usr/local/bin/crictl <<'EOF'
{CRICTL_STUB}EOF
"""
    + r"""cat >/usr/local/bin/kubeadm <<'EOF'
#!/bin/bash
echo "kubeadm $*" >>/var/tmp/calls
for f in /etc/kubernetes/pki/*.crt /etc/kubernetes/pki/etcd/*.crt; do
    case $f in */ca.crt | */front-proxy-ca.crt) continue ;; esac
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null \
        -subj /CN=renewed -days 400 -out "$f" 2>/dev/null
done
EOF
chmod 0755 /usr/local/bin/crictl /usr/local/bin/kubeadm
"""
)

NAMESPACE = (
    r"""
set -euo pipefail
S=$1
"""
    + OVERLAYS
    + r"""rm -rf /etc/kubernetes /etc/bake
cp -a "$S/root/etc/kubernetes" "$S/root/etc/bake" /etc/
mkdir -p /usr/local/bin /usr/local/sbin
install -m 0755 "$S/root/usr/local/sbin/bake-renew-certs" /usr/local/sbin/bake-renew-certs
: >/var/tmp/calls
. "$S/stubs.sh"
rc=0
/usr/local/sbin/bake-renew-certs >"$S/out.log" 2>&1 || rc=$?
echo "$rc" >"$S/rc"
cp /var/tmp/calls "$S/calls"
ls /etc/kubernetes/manifests >"$S/manifests"
ls -A /etc/bake/renew-parked >"$S/parked" 2>/dev/null || true
"""
)


def _can_sandbox(tmp: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        missing("the renewal sandbox needs root and unshare (private mount namespace)")
    if any(str(tmp).startswith(p) for p in ("/etc", "/var", "/usr/local")):
        missing("the temporary directory is inside a sandboxed tree")


def _fake_node(root: Path, env: dict[str, str], not_after_days: int) -> None:
    """A control plane's files: short-lived leaves (openssl), a CA key, the four manifests."""
    pki = root / "etc/kubernetes/pki"
    (pki / "etcd").mkdir(parents=True)
    (root / "etc/kubernetes/manifests").mkdir()
    (root / "etc/bake").mkdir(parents=True)
    (root / "usr/local/sbin").mkdir(parents=True)
    shutil.copy(SCRIPT, root / "usr/local/sbin/bake-renew-certs")
    for name in ("apiserver", "etcd/server"):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "/dev/null", "-subj", "/CN=old", "-days", str(not_after_days), "-out",
             str(pki / f"{name}.crt")],
            check=True, capture_output=True,
        )  # fmt: skip
    (pki / "ca.key").write_bytes(b"CA KEY\n")
    (pki / "etcd/ca.key").write_bytes(b"ETCD CA KEY\n")
    for pod in ("etcd", "kube-apiserver", "kube-scheduler"):
        (root / f"etc/kubernetes/manifests/{pod}.yaml").write_text(f"# {pod}\n")
    lines = [f"{k}={shlex.quote(v)}" for k, v in env.items()]
    (root / "etc/bake/renew-certs.env").write_text("\n".join(lines) + "\n")


def _sandbox_env(health: Path) -> dict[str, str]:
    return {
        "BAKE_RENEW_NODE": "cp-1",
        "BAKE_RENEW_ROLE": "control-plane",
        "BAKE_RENEW_BEFORE_SECONDS": str(30 * 86400),
        "BAKE_RENEW_CONFIG": "/etc/bake/kubeadm-renew.yaml",
        "BAKE_RENEW_ALL": "yes",
        "BAKE_RENEW_CERTS": f"apiserver={PKI}/apiserver.crt={PKI}/ca.key "
        f"etcd-server={PKI}/etcd/server.crt={PKI}/etcd/ca.key "
        f"admin.conf=/etc/kubernetes/admin.conf={PKI}/ca.key",
        "BAKE_RENEW_PODS": f"etcd=file://{health} kube-apiserver=file://{health} "
        f"kube-controller-manager=file://{health} kube-scheduler=",  # no URL: a new container is enough
        "BAKE_RENEW_MANIFESTS_DIR": "/etc/kubernetes/manifests",
        "BAKE_RENEW_PARK_DIR": "/etc/bake/renew-parked",
        "BAKE_RENEW_CRI_SOCKET": "unix:///run/containerd/containerd.sock",
        "BAKE_RENEW_WAIT_SECONDS": "20",
        "BAKE_RENEW_STAGGER_SECONDS": "0",
    }


def _run_sandbox(tmp: Path, not_after_days: int) -> tuple[int, str, list[str], str]:
    _can_sandbox(tmp)
    health = tmp / "healthy"
    health.write_text("ok\n")
    _fake_node(tmp / "root", _sandbox_env(health), not_after_days)
    (tmp / "stubs.sh").write_text(STUBS)
    (tmp / "ns.sh").write_text(NAMESPACE)
    proc = subprocess.run(["unshare", "-m", "bash", str(tmp / "ns.sh"), str(tmp)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = (tmp / "calls").read_text().splitlines()
    return (
        int((tmp / "rc").read_text()),
        (tmp / "out.log").read_text(),
        calls,
        (tmp / "manifests").read_text(),
    )


@pytest.mark.integration
def test_nothing_due_changes_nothing(tmp_path: Path) -> None:
    rc, log, calls, _ = _run_sandbox(tmp_path, not_after_days=60)
    assert rc == 0, log
    assert "nothing to renew" in log
    assert not [c for c in calls if c.startswith("kubeadm")], calls
    assert not [c for c in calls if c.startswith("crictl")], calls  # no pod is touched
    assert "admin.conf: /etc/kubernetes/admin.conf is not on this node" in log


@pytest.mark.integration
def test_due_renews_then_restarts_the_pods_one_at_a_time(tmp_path: Path) -> None:
    rc, log, calls, manifests = _run_sandbox(tmp_path, not_after_days=10)
    assert rc == 0, log
    assert [c for c in calls if c.startswith("kubeadm")] == [
        "kubeadm certs renew all --config /etc/bake/kubeadm-renew.yaml"
    ]
    # each pod in turn: stopped (its manifest aside), then back, before the next one is touched
    restarted = [line.split(":")[1].strip() for line in log.splitlines() if line.endswith(": restarted")]
    assert restarted == ["etcd", "kube-apiserver", "kube-scheduler"], log
    order = [
        re.search(r"bake-renew-certs: (\S+): manifest (moved aside|back)", line) for line in log.splitlines()
    ]
    steps = [(m.group(1), m.group(2)) for m in order if m]
    assert steps == [
        (p, s) for p in ("etcd", "kube-apiserver", "kube-scheduler") for s in ("moved aside", "back")
    ]
    assert "kube-controller-manager: no manifest" in log
    assert manifests.split() == ["etcd.yaml", "kube-apiserver.yaml", "kube-scheduler.yaml"]
    assert (tmp_path / "parked").read_text() == ""


@pytest.mark.integration
def test_a_pod_that_does_not_come_back_fails_the_unit_with_its_manifest_in_place(tmp_path: Path) -> None:
    _can_sandbox(tmp_path)
    env = _sandbox_env(tmp_path / "never-healthy")  # the health URL never answers
    env["BAKE_RENEW_WAIT_SECONDS"] = "3"
    _fake_node(tmp_path / "root", env, not_after_days=10)
    (tmp_path / "stubs.sh").write_text(STUBS)
    (tmp_path / "ns.sh").write_text(NAMESPACE)
    subprocess.run(["unshare", "-m", "bash", str(tmp_path / "ns.sh"), str(tmp_path)], check=True, timeout=120)
    log = (tmp_path / "out.log").read_text()
    assert (tmp_path / "rc").read_text().strip() == "1", log
    assert "etcd did not come back" in log
    assert "etcd.yaml" in (tmp_path / "manifests").read_text().split()
    assert "kube-apiserver: manifest moved aside" not in log  # it stops at the first pod


@pytest.mark.integration
@pytest.mark.parametrize("days", [10, 60])
def test_external_etcd_control_plane_says_its_etcd_client_is_renewed_by_re_bake_only(
    tmp_path: Path, days: int
) -> None:
    """A control plane with external etcd holds no etcd CA key (placement.TABLE): its apiserver-etcd-client
    inside the window is a journal warning naming it, its expiry and the fix, and fails the unit; the
    rest is renewed. Outside the window: not a word of it."""
    _can_sandbox(tmp_path)
    health = tmp_path / "healthy"
    health.write_text("ok\n")
    env = _sandbox_env(health)
    env["BAKE_RENEW_CERTS"] = (
        f"apiserver={PKI}/apiserver.crt={PKI}/ca.key "
        f"apiserver-etcd-client={PKI}/apiserver-etcd-client.crt={PKI}/etcd/ca.key"
    )
    env["BAKE_RENEW_PODS"] = f"kube-apiserver=file://{health}"
    root = tmp_path / "root"
    _fake_node(root, env, not_after_days=days)
    pki = root / "etc/kubernetes/pki"
    (pki / "etcd/ca.key").unlink()
    (pki / "etcd/server.crt").unlink()
    shutil.copy(pki / "apiserver.crt", pki / "apiserver-etcd-client.crt")
    cert = x509.load_pem_x509_certificate((pki / "apiserver-etcd-client.crt").read_bytes())
    not_after = cert.not_valid_after_utc
    (tmp_path / "stubs.sh").write_text(STUBS)
    (tmp_path / "ns.sh").write_text(NAMESPACE)
    subprocess.run(["unshare", "-m", "bash", str(tmp_path / "ns.sh"), str(tmp_path)], check=True, timeout=120)
    log = (tmp_path / "out.log").read_text()
    rc = int((tmp_path / "rc").read_text())
    calls = (tmp_path / "calls").read_text().splitlines()
    warnings = [line for line in log.splitlines() if line.startswith("<4>")]
    if days == 60:
        assert rc == 0 and warnings == [] and "apiserver-etcd-client: valid until" in log, log
        return
    assert rc == 1, log
    [warning] = warnings
    # openssl's date format, written here from the certificate: "Mon DD HH:MM:SS YYYY GMT", day space-padded
    date = f"{not_after:%b} {not_after.day:2d} {not_after:%H:%M:%S %Y} GMT"
    assert warning.startswith(
        f"<4>bake-renew-certs: WARNING: apiserver-etcd-client (/etc/kubernetes/pki/apiserver-etcd-client.crt)"
        f" expires {date}, inside the renewal window, and is renewed by re-bake only"
    ), warning
    assert "does not hold the etcd CA key" in warning
    assert "run bake again (it re-issues apiserver-etcd-client) and re-seed this node" in warning
    assert (
        "copy the bundle's nodes/cp-1/apiserver-etcd-client.crt and apiserver-etcd-client.key to "
        "/etc/kubernetes/pki/ (0644 / 0600)" in warning
    )
    assert "/etc/kubernetes/manifests/kube-apiserver.yaml" in warning
    # what the node can renew, it did; then the unit fails, naming it again
    renewed = [c for c in calls if c.startswith("kubeadm")]
    assert renewed == ["kubeadm certs renew all --config /etc/bake/kubeadm-renew.yaml"]
    assert "not renewed here: apiserver-etcd-client" in log.splitlines()[-1]


@pytest.mark.integration
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """The service and the timer as baked, installed with the script in a private mount namespace."""
    _can_sandbox(tmp_path)
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing("systemd-analyze is not installed")
    plan = _plan("single-master")
    files = {f.path: f for f in renewal.renewal_files(plan, plan.node("cp-1"))}
    for path, f in files.items():
        target = tmp_path / "files" / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.content)
        target.chmod(f.mode)
    script = textwrap.dedent(
        f"""
        set -euo pipefail
        S={shlex.quote(str(tmp_path))}
        mount --make-rprivate /
        for d in etc usr/local; do
            mkdir -p "$S/upper/$d" "$S/work/$d"
            mount -t overlay overlay -o "lowerdir=/$d,upperdir=$S/upper/$d,workdir=$S/work/$d" "/$d"
        done
        cp -a "$S/files/etc/." /etc/
        cp -a "$S/files/usr/local/." /usr/local/
        {analyze} verify {renewal.SERVICE_PATH} {renewal.TIMER_PATH}
        """
    )
    proc = subprocess.run(["unshare", "-m", "bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "bake-renew" not in proc.stdout + proc.stderr, proc.stderr


# --------------------------------------------------------------------------------------------------
# the calendar and the warning


def _seed_blobs(user_data: bytes) -> list[tuple[str, bytes]]:
    """(path, PEM) of every certificate in a node's write_files: .crt files and kubeconfigs' data."""
    found = []
    for path, (data, _, _) in disk_files(yaml.safe_load(user_data)).items():
        if path.endswith(".crt"):
            found.append((path, data))
        elif path.endswith(".conf") and b"certificate" in data:
            doc = yaml.safe_load(data)
            for section, inner in (("clusters", "cluster"), ("users", "user")):
                for item in doc.get(section) or []:
                    for key in ("certificate-authority-data", "client-certificate-data"):
                        if key in item[inner]:
                            found.append((path, base64.b64decode(item[inner][key])))
    return found


def _seed_certificates(user_data: bytes) -> set[tuple[str, str]]:
    """(path, subject CN) of every certificate in a node's write_files, read here with openssl."""
    found = set()
    for path, blob in _seed_blobs(user_data):
        subject = subprocess.run(["openssl", "x509", "-noout", "-subject", "-nameopt", "multiline"],
                                 input=blob, capture_output=True, check=True).stdout.decode()  # fmt: skip
        found.add((path, re.search(r"commonName\s*=\s*(.*)", subject).group(1).strip()))  # type: ignore[union-attr]
    return found


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("calendar") / "outputs"
    proc = bake("--profile", "single-master", "-q", "--set", "cluster.certificateValidityPeriod=240h",
                "--set", "cluster.certificateRenewal.before=48h", out=out)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out / "single-master", proc.stderr


@pytest.mark.integration
def test_calendar_lists_every_certificate_of_the_seeds_and_the_bundle(short_lived: tuple[Path, str]) -> None:
    tree, _ = short_lived
    now = datetime.now(UTC)
    report = check.check_tree(tree, now=now, secrets_dir=bundle(tree.parent, "single-master"))
    seeds = {(e.file, e.subject) for e in report.calendar if e.node == "cp-1"}
    assert seeds == _seed_certificates((tree / "nodes/cp-1/user-data").read_bytes())
    assert {(e.file, e.subject) for e in report.calendar if e.node == "worker-1"} == {
        ("/etc/bake/join.conf", "kubernetes"),
        ("/etc/bake/join.conf", "system:node:worker-1"),
    }
    in_bundle = {e.file for e in report.calendar if e.node == "bundle"}
    assert {"pki/ca", "pki/front-proxy-ca", "pki/etcd-ca", "nodes/cp-1/apiserver"} <= in_bundle
    apiserver = [e for e in report.calendar if e.file == "/etc/kubernetes/pki/apiserver.crt"]
    assert [e.days_left(now) for e in apiserver] == [9]  # 240h from the bake, a few seconds ago
    assert report.calendar == sorted(report.calendar, key=lambda e: (e.not_after, e.node, e.file, e.subject))
    entry = next(e for e in report.as_dict()["calendar"] if e["file"] == "/etc/kubernetes/pki/apiserver.crt")
    assert entry["node"] == "cp-1" and entry["subject"] == "kube-apiserver" and entry["daysLeft"] == 9
    assert entry["notAfter"] == f"{apiserver[0].not_after:%Y-%m-%dT%H:%M:%SZ}"


@pytest.mark.integration
def test_check_prints_the_calendar_and_json_has_it(short_lived: tuple[Path, str]) -> None:
    tree, _ = short_lived
    text = run_check(tree)
    assert "expiry calendar (" in text.stdout
    line = next(x for x in text.stdout.splitlines() if "/etc/kubernetes/pki/apiserver.crt" in x)
    assert re.search(r"\s9 days cp-1\s+/etc/kubernetes/pki/apiserver.crt\s+\(kube-apiserver\)", line), line
    js = run_check(tree, "--json")
    cal = json.loads(js.stdout)["calendar"]
    assert any(e["node"] == "worker-2" and e["file"] == "/etc/bake/join.conf" for e in cal)


@pytest.mark.integration
def test_bake_warns_about_nothing_it_re_issued(short_lived: tuple[Path, str]) -> None:
    """Leaves 10 days from expiry, a 48h window: not due, so neither re-issued nor warned about."""
    _, stderr = short_lived
    assert not [x for x in stderr.splitlines() if x.startswith("warning certificate")], stderr


# --------------------------------------------------------------------------------------------------
# one window: the nodes' timer, the bake and `bake check` all judge by cluster.certificateRenewal.before

WINDOW_DAYS = {"wide": 90, "narrow": 10}


@pytest.fixture(scope="module")
def windows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, datetime]]:
    """single-master baked (one-year leaves) with a 90-day and a 10-day renewal window, and when."""
    baked = {}
    for label in WINDOW_DAYS:
        out = tmp_path_factory.mktemp(label) / "outputs"
        now = secrets.utcnow()
        _window_bake(out, label, now)
        baked[label] = (out, now)
    return baked


def _window_bake(out: Path, label: str, now: datetime, *only: str) -> bake_module.BakeResult:
    before = f"cluster.certificateRenewal.before={WINDOW_DAYS[label] * 24}h"
    options = bake_module.BakeOptions(
        profile="single-master", sets=("cluster.encryptionAlgorithm=ECDSA-P256", before), out_root=out,
        now=now, jobs=1, secrets=bundle(out, "single-master"), only=only,
    )  # fmt: skip
    return bake_module.run(options)


def _leaf_not_after(out: Path, leaf: str) -> datetime:
    pem = (bundle(out, "single-master") / "nodes" / "cp-1" / f"{leaf}.crt").read_bytes()
    return x509.load_pem_x509_certificate(pem).not_valid_after_utc


@pytest.mark.parametrize(
    ("label", "left", "warned"),
    [("wide", 60, True), ("narrow", 60, False), ("narrow", 20, False), ("wide", 20, True)],
)  # 20 days: inside a window hard-coded to 30 days, outside the profile's 10
def test_check_warns_by_the_profiles_window(
    windows: dict[str, tuple[Path, datetime]], label: str, left: int, warned: bool
) -> None:
    """A leaf 60 (20) days from expiry: inside a 90-day window (warned), outside a 10-day one (not)."""
    out, _ = windows[label]
    tree = out / "single-master"
    not_after = _leaf_not_after(out, "apiserver")
    now = not_after - timedelta(days=left)
    report = check.check_tree(tree, now=now, secrets_dir=bundle(out, "single-master"))
    expiring = {f.where: f.message for f in report.findings if f.check == "cert-expiring"}
    if warned:
        said = expiring["secrets/nodes/cp-1/apiserver"]
        assert said == f"expires on {not_after:%Y-%m-%d}, in less than 90 days"
    else:
        assert "secrets/nodes/cp-1/apiserver" not in expiring, expiring
    # the node's timer renews in the same window (the env file in the seed, read here as a shell would)
    env = dict(line.split("=", 1) for line in _env_lines(tree, "cp-1"))
    assert int(env["BAKE_RENEW_BEFORE_SECONDS"]) == WINDOW_DAYS[label] * 86400
    # and the calendar colours by it: yellow iff due
    due = [e for e in report.calendar if e.file == "/etc/kubernetes/pki/apiserver.crt"]
    assert [e.not_after - now < e.window(report.renewal)[0] for e in due] == [warned]


def _env_lines(tree: Path, node: str) -> list[str]:
    for entry in yaml.safe_load((tree / "nodes" / node / "user-data").read_bytes())["write_files"]:
        if entry["path"] == renewal.RENEW_ENV_PATH:
            raw = entry["content"]
            text = base64.b64decode(raw).decode() if entry.get("encoding") == "b64" else raw
            return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    raise AssertionError("no renewal env file")


@pytest.mark.parametrize(
    ("label", "left", "warned"),
    [("wide", 60, True), ("narrow", 60, False), ("narrow", 20, False), ("wide", 20, True)],
)  # 20 days: inside a window hard-coded to 30 days, outside the profile's 10
def test_bake_warns_by_the_profiles_window(
    windows: dict[str, tuple[Path, datetime]], tmp_path: Path, label: str, left: int, warned: bool
) -> None:
    """A bake with --only worker-1, 60 (20) days before cp-1's leaves expire: it keeps them (not its node) and
    warns about them inside a 90-day window, not with a 10-day one."""
    src, _ = windows[label]
    out = tmp_path / "outputs"
    shutil.copytree(src, out, symlinks=True)
    now = _leaf_not_after(out, "apiserver") - timedelta(days=left)
    result = _window_bake(out, label, now, "worker-1")
    apiserver = [w for w in result.expiring if "(bundle nodes/cp-1/apiserver)" in w]
    if warned:
        assert len(apiserver) == 1, result.expiring
        assert f"in {left} days (within cluster.certificateRenewal.before (2160h))" in apiserver[0]
    else:
        assert apiserver == [], result.expiring
    assert not [w for w in result.expiring if "join.conf" in w]


def _expiry_entries(days: list[int]) -> list[check.Expiry]:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    return [check.Expiry("bundle", f"nodes/cp-1/leaf{d}", f"cn{d}", now + timedelta(days=d)) for d in days]


def test_expiring_is_strictly_inside_the_window_and_leaves_join_credentials_out() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    entries = _expiry_entries([45, 30, 29, 1, -3])
    entries.append(check.Expiry("bundle", "nodes/worker-1/join.conf", "system:node:worker-1", now))
    entries.append(check.Expiry("worker-1", "/etc/bake/join.conf", "system:node:worker-1", now))
    hits = check.expiring(entries, now, CertificateRenewal(before="720h"))
    assert [e.file for e in hits] == ["nodes/cp-1/leaf-3", "nodes/cp-1/leaf1", "nodes/cp-1/leaf29"]


def test_default_profiles_bake_without_a_warning() -> None:
    plan = _plan("single-master")
    assert plan.settings.certificate_renewal.before == "720h"
    assert plan.settings.certificate_renewal.on_calendar == "daily"


# --------------------------------------------------------------------------------------------------
# a re-bake: nodes renew their own copies and the bundle keeps the leaves it issued, so a bake re-issues
# what is expired or inside the nodes' renewal window before it puts a leaf in a seed

REBAKE_CLUSTER = "ha-external-etcd"
REBAKE_SETS = (
    "cluster.encryptionAlgorithm=ECDSA-P256",
    "cluster.certificateValidityPeriod=4320h",  # 180 days
    "cluster.certificateRenewal.before=1440h",  # 60 days: wider than the 30 days of a join credential
)
VALIDITY, WINDOW = timedelta(days=180), timedelta(days=60)


def _rebake(out: Path, now: datetime, *only: str) -> bake_module.BakeResult:
    options = bake_module.BakeOptions(profile=REBAKE_CLUSTER, sets=REBAKE_SETS, out_root=out, now=now, jobs=1,
                                      secrets=bundle(out, REBAKE_CLUSTER), only=only)  # fmt: skip
    return bake_module.run(options)


@pytest.fixture(scope="module")
def first_bake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, datetime]:
    out = tmp_path_factory.mktemp("rebake") / "outputs"
    now = secrets.utcnow()
    _rebake(out, now)
    return out, now


def _copy_of(first_bake: tuple[Path, datetime], tmp_path: Path) -> Path:
    shutil.copytree(first_bake[0], tmp_path / "outputs", symlinks=True)
    return tmp_path / "outputs"


def _shipped(out: Path) -> dict[tuple[str, str, str], x509.Certificate]:
    """Every certificate of every seed, by (node, file on the node, subject): what the nodes get."""
    tree = (out / REBAKE_CLUSTER).resolve()
    certs = {}
    for node in sorted((tree / "nodes").iterdir()):
        for path, pem in _seed_blobs((node / "user-data").read_bytes()):
            cert = x509.load_pem_x509_certificate(pem)
            certs[(node.name, path, cert.subject.rfc4514_string())] = cert
    return certs


def _leaf_names(out: Path) -> set[tuple[str, str]]:
    """(owner, leaf) of the bundle, from its index (bundle.json), not from the bake's code."""
    index = json.loads((bundle(out, REBAKE_CLUSTER) / "bundle.json").read_bytes())["leaves"]
    return {(owner, name) for owner, names in index.items() for name in names}


def _digests_of(out: Path) -> tuple[dict[str, str], dict[str, str]]:
    return _digests((out / REBAKE_CLUSTER).resolve()), _digests(bundle(out, REBAKE_CLUSTER))


@pytest.mark.integration
def test_check_flags_the_external_etcd_clients_as_renewed_by_re_bake_only(
    first_bake: tuple[Path, datetime], tmp_path: Path
) -> None:
    """In the calendar, exactly each control plane's apiserver-etcd-client (seed and bundle copy): with
    external etcd no control plane holds the etcd CA key that signs it; etcd members renew their own."""
    out, now = first_bake
    tree = (out / REBAKE_CLUSTER).resolve()
    manifest = json.loads((tree / "manifest.json").read_bytes())
    cps = [n["name"] for n in manifest["nodes"] if n["role"] == "control-plane"]
    assert len(cps) >= 2
    report = check.check_tree(tree, now=now, secrets_dir=bundle(out, REBAKE_CLUSTER))
    flagged = {(e.node, e.file) for e in report.calendar if e.note}
    assert flagged == {(cp, f"{PKI}/apiserver-etcd-client.crt") for cp in cps} | {
        ("bundle", f"nodes/{cp}/apiserver-etcd-client") for cp in cps
    }
    assert {e.note for e in report.calendar if e.note} == {"renewed by re-bake only"}
    calendar = report.as_dict()["calendar"]
    entry = next(e for e in calendar if e["node"] == cps[0] and "etcd-client" in e["file"])
    assert entry["note"] == "renewed by re-bake only"
    text = run_check(tree, "--secrets", str(bundle(out, REBAKE_CLUSTER)))
    lines = [x for x in text.stdout.splitlines() if "apiserver-etcd-client" in x]
    assert lines and all(x.endswith("[renewed by re-bake only]") for x in lines), lines


def test_a_rebake_with_nothing_due_writes_the_same_bytes(
    first_bake: tuple[Path, datetime], tmp_path: Path
) -> None:
    out = _copy_of(first_bake, tmp_path)
    before = _digests_of(out)
    result = _rebake(out, first_bake[1] + timedelta(days=1))
    assert [str(c) for c in result.changes] == [] and result.rewritten == 0
    assert _digests_of(out) == before


@pytest.mark.parametrize(
    ("days", "why"),
    [
        # 45 days left, inside the 60-day window the nodes renew in: the bundle's copy is not renewed
        (135, r"expires \d{4}-\d\d-\d\d \d\d:\d\d UTC, within cluster\.certificateRenewal\.before \(1440h\)"),
        (200, r"certificate expired on \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"),  # the bundle's leaves expired
    ],
    ids=["inside-the-window", "expired"],
)
def test_a_rebake_reissues_due_leaves_and_ships_none(
    first_bake: tuple[Path, datetime], tmp_path: Path, days: int, why: str
) -> None:
    out = _copy_of(first_bake, tmp_path)
    leaves = _leaf_names(out)
    now = first_bake[1] + timedelta(days=days)
    result = _rebake(out, now)
    reissued = {}
    for change in result.changes:
        m = re.fullmatch(r"re-issued (\S+): (.*)", change.what)
        assert m, str(change)
        reissued[(change.owner, m.group(1))] = m.group(2)
    assert set(reissued) == leaves  # every leaf of the bundle is due, join credentials included
    for (owner, name), said in reissued.items():
        expected = r"certificate expired on .*" if name == "join.conf" else why  # its 30-day window ran out
        assert re.fullmatch(expected, said), (owner, name, said)
    shipped = _shipped(out)
    assert {node for node, _, _ in shipped} >= {"etcd-1", "etcd-2", "etcd-3", "cp-1", "worker-1"}
    for (node, path, subject), cert in shipped.items():
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            continue
        lifetime = timedelta(hours=720) if path == "/etc/bake/join.conf" else VALIDITY
        # issued by this bake: NotAfter is this bake's time plus the lifetime, nothing older reaches a node
        assert cert.not_valid_after_utc == now + lifetime, (node, path, subject)
    # and the bundle holds what the seeds hold: the next bake with nothing due changes nothing
    again = _rebake(out, now + timedelta(hours=1))
    assert [str(c) for c in again.changes] == [] and again.rewritten == 0


def test_only_keeps_the_leaves_of_the_nodes_it_carries_over_and_says_so(
    first_bake: tuple[Path, datetime], tmp_path: Path
) -> None:
    out = _copy_of(first_bake, tmp_path)
    leaves = _leaf_names(out)
    result = _rebake(out, first_bake[1] + timedelta(days=200), "worker-1")
    assert [(c.owner, c.what.split(":")[0]) for c in result.changes] == [("worker-1", "re-issued join.conf")]
    kept = {}
    for warning in result.warnings:
        m = re.fullmatch(r"(\S+): (\S+) kept, --only carries it over \((.*)\): bake without --only", warning)
        assert m, warning
        kept[(m.group(1), m.group(2))] = m.group(3)
    assert set(kept) == leaves - {("worker-1", "join.conf")}
    assert all(why.startswith("certificate expired on ") for why in kept.values()), kept


# --------------------------------------------------------------------------------------------------
# the real kubeadm


def _kubeadm_bin(tmp_path: Path) -> Path:
    """The built upstream binaries, in a root sandbox (skipped, or failed in CI, without either)."""
    from tests import k8s

    binaries = k8s.locate("amd64")
    if binaries is None:
        pytest.skip("upstream Kubernetes binaries are not built (make k8s)")
    _can_sandbox(tmp_path)
    return binaries


REAL_NAMESPACE = r"""
set -euo pipefail
R=$1 B=$2 S=$3
mount --make-rprivate /
# /etc as an overlay first: the mount points made below never reach the host's /etc
mkdir -p "$S/upper" "$S/work"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$S/upper,workdir=$S/work" /etc
mkdir -p /etc/kubernetes /etc/bake
mount --bind "$R/etc/kubernetes" /etc/kubernetes
mount --bind "$R/etc/bake" /etc/bake
mount --bind "$B" /usr/local/bin
[[ -z ${4:-} ]] || . "$4"  # a stand-in for what else runs on the node (kubelet, etcd)
bash "$R/usr/local/sbin/bake-renew-certs"
"""

# The kubelet's and etcd's part on an etcd member, in the private network namespace of the run: crictl (a
# stub, in $B) lists a container for each manifest in place, a new one each time it comes back, and the
# member's health endpoint answers 200 (a Python server, stopped when the run ends).
KUBELET_STANDIN = r"""
ip link set lo up
mkdir -p "$S/vartmp"
mount --bind "$S/vartmp" /var/tmp
"$PYTHON" -c '
import http.server, pathlib, sys
class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == sys.argv[3] else 404)
        self.end_headers()
server = http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Ready)
pathlib.Path(sys.argv[4]).touch()
server.serve_forever()
' "$HEALTH_HOST" "$HEALTH_PORT" "$HEALTH_PATH" "$S/health-up" 2>/dev/null &
health=$!
trap 'kill $health' EXIT
until [[ -e $S/health-up ]]; do sleep 0.1; done
"""


def _set_env(root: Path, name: str, value: str) -> None:
    env = root / "etc/bake/renew-certs.env"
    lines = [
        f"{name}={shlex.quote(value)}" if x.startswith(f"{name}=") else x
        for x in env.read_text().splitlines()
    ]
    env.write_text("\n".join(lines) + "\n")


def _renew(root: Path, bindir: Path, tmp: Path, health: str = "") -> subprocess.CompletedProcess[str]:
    """The node's renewal script on its files under `root`, with the binaries of `bindir`; with a
    `health` URL, in a network namespace of its own where KUBELET_STANDIN answers it."""
    (tmp / "ns.sh").write_text(REAL_NAMESPACE)
    overlay = tmp / f"overlay-{len(list(tmp.glob('overlay-*')))}"
    overlay.mkdir()
    argv = ["unshare", "-m", "bash", str(tmp / "ns.sh"), str(root), str(bindir), str(overlay)]
    if health:
        url = urlsplit(health)
        (tmp / "standin.sh").write_text(
            f"PYTHON={shlex.quote(sys.executable)} HEALTH_HOST={url.hostname} HEALTH_PORT={url.port} "
            f"HEALTH_PATH={shlex.quote(url.path)}\n" + KUBELET_STANDIN
        )
        argv = [argv[0], "-n", *argv[1:], str(tmp / "standin.sh")]
    # its own process group: on a timeout nothing it started (a sleep, the health server) is left running
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:  # fmt: skip
        try:
            out, err = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _node_env(root: Path) -> dict[str, str]:
    """The renewal env file as baked onto the node (its values shell-quoted)."""
    lines = (root / renewal.RENEW_ENV_PATH.lstrip("/")).read_text().splitlines()
    return {k: shlex.split(v)[0] if v else "" for k, v in (x.split("=", 1) for x in lines[1:])}


def _digests(root: Path) -> dict[str, str]:
    files = [p for p in sorted(root.rglob("*")) if p.is_file()]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _cert_of(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if path.suffix == ".conf":
        user = yaml.safe_load(data)["users"][0]["user"]
        data = base64.b64decode(user["client-certificate-data"])
    return x509.load_pem_x509_certificate(data)


@pytest.mark.integration
@pytest.mark.realk8s
def test_real_kubeadm_renews_a_baked_control_plane_and_leaves_the_ca_keys(tmp_path: Path) -> None:
    binaries = _kubeadm_bin(tmp_path)
    from .test_real_kubeadm import bake_profile

    baked = bake_profile("single-master", tmp_path / "baked", "cluster.certificateValidityPeriod=3h",
                         "cluster.certificateRenewal.before=1h")  # fmt: skip
    root = baked.copy(baked.nodes["cp-1"])
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "kubeadm").symlink_to(binaries / "kubeadm")
    watched = _node_env(root)["BAKE_RENEW_CERTS"].split()
    files = {e.split("=")[0]: root / e.split("=")[1].lstrip("/") for e in watched}
    assert len(files) == 11
    keys = ["ca.key", "front-proxy-ca.key", "etcd/ca.key", "sa.key"]
    key_bytes = {k: (root / "etc/kubernetes/pki" / k).read_bytes() for k in keys}
    before = {name: _cert_of(path) for name, path in files.items()}

    # freshly baked: 3h left, window 1h: nothing is due, nothing changes
    pristine = _digests(root)
    first = _renew(root, bindir, tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "nothing to renew" in first.stdout and "kubeadm certs renew" not in first.stdout
    assert _digests(root) == pristine

    # a window wider than what is left (through the env file): every certificate is renewed by kubeadm
    _set_env(root, "BAKE_RENEW_BEFORE_SECONDS", str(4 * 3600))
    second = _renew(root, bindir, tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "running: kubeadm certs renew all --config /etc/bake/kubeadm-renew.yaml" in second.stdout
    ca = x509.load_pem_x509_certificate((root / "etc/kubernetes/pki/ca.crt").read_bytes())
    for name, path in files.items():
        old, new = before[name], _cert_of(path)
        assert new.not_valid_after_utc > old.not_valid_after_utc, name
        assert new.serial_number != old.serial_number, name
        assert new.subject == old.subject, name
        # the profile's validity (kubeadm reads it from the renewal config), not kubeadm's one year
        lifetime = new.not_valid_after_utc - new.not_valid_before_utc
        assert timedelta(hours=3) <= lifetime <= timedelta(hours=3, minutes=10), (name, lifetime)
        if new.issuer == ca.subject:
            new.verify_directly_issued_by(ca)
    assert {k: (root / "etc/kubernetes/pki" / k).read_bytes() for k in keys} == key_bytes

    # back to the profile's window: the renewed certificates are not due, a run changes nothing
    _set_env(root, "BAKE_RENEW_BEFORE_SECONDS", str(3600))
    renewed = _digests(root)
    third = _renew(root, bindir, tmp_path)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "nothing to renew" in third.stdout
    assert _digests(root) == renewed


ETCD_LEAVES = {
    "etcd-server": "etcd/server",
    "etcd-peer": "etcd/peer",
    "etcd-healthcheck-client": "etcd/healthcheck-client",
}


def _sans(cert: x509.Certificate) -> list[str]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n.value) for n in sans]


def _openssl_verify(ca: Path, cert: Path) -> str:
    proc = subprocess.run([program("openssl"), "verify", "-CAfile", str(ca), str(cert)],
                          capture_output=True, text=True)  # fmt: skip
    return proc.stdout + proc.stderr


@pytest.mark.integration
@pytest.mark.realk8s
def test_real_kubeadm_renews_an_external_etcd_member_from_its_own_files(tmp_path: Path) -> None:
    """Only what the member's seed gives it (its user-data laid out, no bundle): kubeadm signs with the
    member's own etcd CA key, and the etcd pod is restarted through its manifest."""
    binaries = _kubeadm_bin(tmp_path)
    from .test_real_kubeadm import bake_profile

    baked = bake_profile("ha-external-etcd", tmp_path / "baked", "cluster.certificateValidityPeriod=3h",
                         "cluster.certificateRenewal.before=1h")  # fmt: skip
    member = baked.nodes["etcd-1"]  # the first member: no stagger before its renewal
    root = baked.copy(member)
    pki = root / "etc/kubernetes/pki"
    assert not list(pki.glob("*.key")), "an etcd member holds no key outside pki/etcd/"
    assert (pki / "etcd/ca.key").stat().st_mode & 0o777 == 0o600, "the member's seed lacks etcd/ca.key"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "kubeadm").symlink_to(binaries / "kubeadm")
    (bindir / "crictl").write_text(CRICTL_STUB)
    (bindir / "crictl").chmod(0o755)
    pods = _node_env(root)["BAKE_RENEW_PODS"].split()
    health = next(entry.split("=", 1)[1] for entry in pods if entry.startswith("etcd="))
    ca_files = {name: (pki / name).read_bytes() for name in ("etcd/ca.crt", "etcd/ca.key")}
    before = {name: _cert_of(pki / f"{base}.crt") for name, base in ETCD_LEAVES.items()}

    # freshly baked: 3h left, window 1h: nothing is due, nothing changes
    pristine = _digests(root)
    first = _renew(root, bindir, tmp_path, health)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "nothing to renew" in first.stdout and "kubeadm certs renew" not in first.stdout
    assert _digests(root) == pristine

    # a window wider than what is left: kubeadm renews the three leaves, one by one, then etcd restarts
    _set_env(root, "BAKE_RENEW_BEFORE_SECONDS", str(4 * 3600))
    second = _renew(root, bindir, tmp_path, health)
    assert second.returncode == 0, second.stdout + second.stderr
    for name in ETCD_LEAVES:
        assert f"running: kubeadm certs renew {name} --config /etc/bake/kubeadm-renew.yaml" in second.stdout
    assert "etcd: restarted" in second.stdout
    assert "renewed: etcd-server etcd-peer etcd-healthcheck-client" in second.stdout
    assert (root / "etc/kubernetes/manifests/etcd.yaml").read_bytes() == (
        member.root / "etc/kubernetes/manifests/etcd.yaml"
    ).read_bytes()
    for name, base in ETCD_LEAVES.items():
        old, new = before[name], _cert_of(pki / f"{base}.crt")
        assert new.not_valid_after_utc > old.not_valid_after_utc, name
        assert new.serial_number != old.serial_number, name
        assert new.subject == old.subject, name
        assert _sans(new) == _sans(old), name
        lifetime = new.not_valid_after_utc - new.not_valid_before_utc
        assert timedelta(hours=3) <= lifetime <= timedelta(hours=3, minutes=10), (name, lifetime)
        said = _openssl_verify(pki / "etcd/ca.crt", pki / f"{base}.crt")
        assert said.strip().endswith(": OK"), (name, said)
    assert {name: (pki / name).read_bytes() for name in ca_files} == ca_files

    # the same member without the etcd CA key (as bakes before this one made them): reported, not renewed
    bare = baked.copy(member, "bare")
    (bare / "etc/kubernetes/pki/etcd/ca.key").unlink()
    _set_env(bare, "BAKE_RENEW_BEFORE_SECONDS", str(4 * 3600))
    unchanged = _digests(bare)
    third = _renew(bare, bindir, tmp_path, health)
    assert third.returncode == 1, third.stdout + third.stderr
    assert "not renewed here: etcd-server etcd-peer etcd-healthcheck-client" in third.stdout
    assert "kubeadm certs renew" not in third.stdout
    assert _digests(bare) == unchanged
