"""cloudinit.py: user-data / meta-data / network-config per node.

Every user-data of every embedded profile (and OS / arch / runtime / package-mode / IPv6 variants) is
checked by cloud-init's own validator (`cloud-init schema`, the Debian package, run as a program).
The golden test renders every node of every embedded profile with real PKI (the profile's fixture
bundle) and compares the whole seed with the golden tree (tests/golden_tree.py); `make golden`
refreshes the tree and prints what changed. The other tests here use a stand-in for the secrets stage
(`fake_pki_files`): they are about the seed's structure, not its certificates.
"""

from __future__ import annotations

import base64
import copy
import ctypes
import ctypes.util
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from builder import resources, yamlio
from builder.errors import BakeError
from builder.files import NodeFile, public, secret
from builder.model import Profile
from builder.node import bootstrap, cloudinit, distribute
from builder.pki import secrets
from builder.plan import ClusterPlan, NodePlan, build_plan
from builder.validation.profile import validate

from .golden_tree import BUNDLES, GOLDEN, bundle_ca_hash, bundle_token, golden_plan, split
from .golden_tree import PROFILES as GOLDEN_PROFILES
from .helpers import compare_golden, disk_files, plan_of
from .peers import program

REPO = Path(__file__).resolve().parents[1]
TOKEN = "abcdef.0123456789abcdef"
CA_HASH = "sha256:" + "ab" * 32
PROFILES = ("single-master", "single-node", "ha-stacked", "ha-external-etcd", "etcd-cluster")

IPV6_HA_STACKED = (
    "cluster.loadBalancer.vip=fd00:77::10",
    "cluster.podSubnet=fd00:10:244::/56",
    "cluster.serviceSubnet=fd00:10:96::/112",
    "defaults.gateway=fd00:77::1",
    "defaults.dns=[fd00:77::1]",
    "defaults.prefixLength=64",
    "nodes[0].ip=fd00:77::11",
    "nodes[1].ip=fd00:77::12",
    "nodes[2].ip=fd00:77::13",
    "nodes[3].ip=fd00:77::21",
    "nodes[4].ip=fd00:77::22",
)
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "rocky-9": ("ha-external-etcd", ("defaults.os=rocky-9",)),
    "fedora-42": ("ha-stacked", ("defaults.os=fedora-42",)),
    "debian-12-arm64": ("ha-stacked", ("defaults.os=debian-12", "defaults.arch=arm64")),
    "crio": ("ha-external-etcd", ("cluster.containerRuntime=crio",)),
    "crio-alma": ("ha-stacked", ("cluster.containerRuntime=crio", "defaults.os=alma-9")),
    "prebaked": ("ha-stacked", ("cluster.packages.mode=prebaked",)),
    "ipv6": ("ha-stacked", IPV6_HA_STACKED),
    "flannel-1.34": ("single-node", ("cluster.cni=flannel", "cluster.kubernetesVersion=1.34")),
    "cilium": ("single-master", ("cluster.cni=cilium", "defaults.arch=arm64")),
    "no-mac-ubuntu-22.04": ("single-master", ("defaults.os=ubuntu-22.04", "nodes[0].mac=null")),
}


def fake_pki_files(plan: ClusterPlan, node: NodePlan) -> list[NodeFile]:
    """TEST DOUBLE for the secrets stage (built in parallel): fixed strings at kubeadm's paths and modes.

    These tests are about the structure of the seed (YAML, modes, owners, which files), not about
    certificates, so a fake with the real stage's shape is enough here.
    """
    pki = "/etc/kubernetes/pki"
    if node.role.value == "worker":
        return []
    if node.role.value == "etcd":
        return [
            public(f"{pki}/etcd/ca.crt", f"FAKE etcd CA for {plan.name}\n"),
            public(f"{pki}/etcd/server.crt", f"FAKE etcd server cert for {node.name}\n"),
            secret(f"{pki}/etcd/server.key", f"FAKE etcd server key for {node.name}\n".encode()),
        ]
    files = [
        public(f"{pki}/ca.crt", f"FAKE CA for {plan.name}\n"),
        secret(f"{pki}/ca.key", f"FAKE CA key for {plan.name}\n".encode()),
        secret(f"{pki}/sa.key", b"FAKE sa.key\n"),
        secret("/etc/kubernetes/admin.conf", f"FAKE admin.conf for {node.name}\n".encode()),
    ]
    if node.is_init:
        files.append(secret("/etc/kubernetes/super-admin.conf", b"FAKE super-admin.conf\n"))
    return files


def render(plan: ClusterPlan, node: NodePlan) -> cloudinit.RenderedNode:
    return cloudinit.render_node(
        plan, node, pki_files=fake_pki_files(plan, node), token=TOKEN, ca_hash=CA_HASH
    )


def _load(user_data: bytes) -> dict[str, Any]:
    assert user_data.startswith(b"#cloud-config\n")
    doc = yaml.safe_load(user_data)
    assert isinstance(doc, dict)
    return doc


# --------------------------------------------------------------------------------------------------
# cloud-init's own validator


def _cloud_init() -> str:
    return program("cloud-init")  # the schema's real peer


def schema_check(tmp_path: Path, name: str, user_data: bytes) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"{name}.user-data"
    path.write_bytes(user_data)
    # cloud-init runs on the system python (it is a Debian package); keep the project's venv out of it.
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}
    return subprocess.run(
        [_cloud_init(), "schema", "--config-file", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _all_cases() -> Iterator[tuple[str, str, tuple[str, ...], str]]:
    for name in PROFILES:
        for node in plan_of(name).nodes:
            yield f"{name}/{node.name}", name, (), node.name
    for variant, (name, sets) in VARIANTS.items():
        plan = plan_of(name, *sets)
        seen = set()
        for node in plan.nodes:
            kind = "init" if node.is_init else node.role.value
            if kind not in seen:
                seen.add(kind)
                yield f"{variant}/{node.name}", name, sets, node.name


CASES = list(_all_cases())


@pytest.mark.integration
@pytest.mark.parametrize(("case", "profile", "sets", "node"), CASES, ids=[c[0] for c in CASES])
def test_user_data_passes_cloud_init_schema(
    tmp_path: Path, case: str, profile: str, sets: tuple[str, ...], node: str
) -> None:
    plan = plan_of(profile, *sets)
    rendered = render(plan, plan.node(node))
    proc = schema_check(tmp_path, "ud", rendered.user_data)
    assert proc.returncode == 0, f"{case}: {proc.stdout}{proc.stderr}"
    assert "Valid cloud-config" in proc.stdout


def _broken(doc: dict[str, Any], how: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    if how == "permissions-not-a-string":
        doc["write_files"][0]["permissions"] = 420
    elif how == "unknown-write-files-key":
        doc["write_files"][0]["mode"] = "0644"
    elif how == "users-not-a-list":
        doc["users"] = 42
    elif how == "runcmd-not-a-list":
        doc["runcmd"] = {"systemctl": "start"}
    elif how == "unknown-encoding":  # the schema judges encodings: gz+b64 passing means something
        (entry,) = [e for e in doc["write_files"] if e.get("encoding") == "gz+b64"]
        entry["encoding"] = "gz+b65"
    return doc


@pytest.mark.integration
@pytest.mark.parametrize(
    "how",
    ["permissions-not-a-string", "unknown-write-files-key", "users-not-a-list", "runcmd-not-a-list",
     "unknown-encoding"],
)  # fmt: skip
def test_broken_user_data_fails_the_validator(tmp_path: Path, how: str) -> None:
    plan = plan_of("single-master")
    good = _load(render(plan, plan.node("worker-1")).user_data)
    bad = ("#cloud-config\n" + yamlio.dump(_broken(good, how))).encode()
    proc = schema_check(tmp_path, how, bad)
    assert proc.returncode != 0, proc.stdout


# --------------------------------------------------------------------------------------------------
# structure


def _write_files(user_data: bytes) -> dict[str, tuple[bytes, str, str]]:
    doc = _load(user_data)
    for entry in doc["write_files"]:
        assert set(entry) <= {"path", "owner", "permissions", "encoding", "content", "defer"}
        assert entry["defer"] is False
    return disk_files(doc)  # the first-boot archive's files as runcmd unpacks them


@pytest.mark.parametrize("name", PROFILES)
def test_files_are_exactly_write_files(name: str) -> None:
    plan = plan_of(name)
    for node in plan.nodes:
        rendered = render(plan, node)
        written = _write_files(rendered.user_data)  # the first-boot archive's files among them
        assert sorted(written) == [f.path for f in rendered.files]
        entries = [e["path"] for e in _load(rendered.user_data)["write_files"]]
        assert entries == sorted(entries) and "/usr/local/lib/bake/first-boot.tar" in entries
        for f in rendered.files:
            assert written[f.path] == (f.content, f.mode_text, f.owner)
            if f.secret:
                assert f.mode & 0o077 == 0


def test_every_node_gets_the_bootstrap_and_host_files() -> None:
    plan = plan_of("ha-external-etcd")
    for node in plan.nodes:
        paths = {f.path for f in render(plan, node).files}
        assert {
            bootstrap.layout.SCRIPT_PATH,
            bootstrap.layout.UNIT_PATH,
            bootstrap.layout.ENV_PATH,
            "/etc/modules-load.d/k8s.conf",
            "/etc/sysctl.d/k8s.conf",
            "/etc/bake/containerd/config-v2.toml",
            "/etc/bake/containerd/config-v3.toml",
            "/etc/crictl.yaml",
        } <= paths
        if node.role.value != "etcd":
            assert any(p.startswith("/run/kubeadm/") for p in paths)
    script = next(f for f in render(plan, plan.node("cp-1")).files if f.path == bootstrap.layout.SCRIPT_PATH)
    assert script.mode == 0o755


def test_user_data_shape() -> None:
    plan = plan_of("single-master")
    doc = _load(render(plan, plan.node("cp-1")).user_data)
    assert list(doc) == [
        "hostname", "fqdn", "preserve_hostname", "manage_etc_hosts",
        "users", "ssh_pwauth", "write_files", "runcmd",
    ]  # fmt: skip
    assert doc["hostname"] == doc["fqdn"] == "cp-1"
    assert doc["ssh_pwauth"] is False
    assert doc["users"] == [
        {"name": "ops", "sudo": "ALL=(ALL) NOPASSWD:ALL", "shell": "/bin/bash", "lock_passwd": True}
    ]
    assert doc["runcmd"] == [
        # the shared first-boot program (scripts, bake-* units) unpacked before systemd reads the units
        [
            "tar",
            "--extract",
            "--file",
            "/usr/local/lib/bake/first-boot.tar",
            "--directory",
            "/",
            "--same-owner",
            "--same-permissions",
            "--touch",
        ],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "bake-bootstrap.service"],
        ["systemctl", "start", "--no-block", "bake-bootstrap.service"],
        ["systemctl", "enable", "--now", "bake-renew-certs.timer"],  # a control plane: certificate renewal
    ]
    assert "bootcmd" not in doc


def test_network_config_v4_with_mac_and_v6_by_name() -> None:
    plan = plan_of("single-master")
    net = yaml.safe_load(render(plan, plan.node("worker-1")).network_config)
    assert net == {
        "version": 2,
        "ethernets": {
            "eth0": {
                "match": {"macaddress": "52:54:00:77:00:21"},
                "set-name": "eth0",
                "dhcp4": False,
                "dhcp6": False,
                "addresses": ["10.77.0.21/24"],
                "routes": [{"to": "0.0.0.0/0", "via": "10.77.0.1"}],
                "nameservers": {"addresses": ["10.77.0.1"]},
            }
        },
    }
    plan = plan_of("ha-stacked", *IPV6_HA_STACKED, "nodes[3].mac=null", "nodes[3].interface=ens3")
    net = yaml.safe_load(render(plan, plan.node("worker-1")).network_config)
    eth = net["ethernets"]["ens3"]
    assert eth["match"] == {"name": "ens3"} and "set-name" not in eth
    assert eth["addresses"] == ["fd00:77::21/64"]
    assert eth["routes"] == [{"to": "::/0", "via": "fd00:77::1"}]


def test_meta_data() -> None:
    plan = plan_of("ha-stacked")
    rendered = render(plan, plan.node("cp-2"))
    meta = yaml.safe_load(rendered.meta_data)
    # cluster, node and generation (0 by default), '.'-joined: nothing of the seed's content
    assert meta == {"instance-id": "ha-stacked.cp-2.gen0", "local-hostname": "cp-2"}
    assert rendered.instance_id == meta["instance-id"]


def _instance_id(rendered: cloudinit.RenderedNode) -> str:
    return str(yaml.safe_load(rendered.meta_data)["instance-id"])


def test_instance_id_survives_a_rebake_that_changes_the_seed() -> None:
    """A re-bake that changes a running node's seed must not make cloud-init take it for a new machine
    (it would rewrite its PKI, kubelet.conf, static pods and SSH host keys at the next reboot)."""
    plan = plan_of("ha-external-etcd")
    cp1 = plan.node("cp-1")
    base = render(plan, cp1)
    rotated = cloudinit.render_node(
        plan, cp1, pki_files=fake_pki_files(plan, cp1), token="zyxwvu.9876543210zyxwvu", ca_hash=CA_HASH
    )
    assert rotated.user_data != base.user_data
    assert _instance_id(rotated) == _instance_id(base) == "ha-external-etcd.cp-1.gen0"
    # a fourth control plane (in place of worker-2) enters haproxy's backends on cp-1
    grown = plan_of("ha-external-etcd", "nodes[7]={name: cp-4, role: control-plane, ip: 10.77.0.14}")
    regrown = render(grown, grown.node("cp-1"))
    assert b"10.77.0.14" in regrown.user_data and b"10.77.0.14" not in base.user_data
    assert _instance_id(regrown) == _instance_id(base)


def test_generation_bump_reprovisions_that_node_only() -> None:
    plan = plan_of("ha-external-etcd")
    bumped = plan_of("ha-external-etcd", "nodes[4].generation=3")  # cp-2
    before = {n.name: _instance_id(render(plan, n)) for n in plan.nodes}
    after = {n.name: _instance_id(render(bumped, n)) for n in bumped.nodes}
    assert after["cp-2"] == "ha-external-etcd.cp-2.gen3" != before["cp-2"]
    assert {k: v for k, v in after.items() if k != "cp-2"} == {k: v for k, v in before.items() if k != "cp-2"}
    assert len(set(before.values())) == len(before)  # no two nodes share an id
    other = plan_of("ha-external-etcd", "cluster.name=other")
    assert not {_instance_id(render(other, n)) for n in other.nodes} & set(before.values())


@pytest.mark.parametrize("value", ["-1", "one", "1.5"])
def test_generation_is_a_non_negative_integer(value: str) -> None:
    with pytest.raises(BakeError) as info:
        plan_of("single-master", f"nodes[1].generation={value}")
    assert [p.path for p in info.value.problems] == ["nodes[1].generation"]


def test_binary_and_control_character_content_goes_base64() -> None:
    for content in (b"\x00\x01\xff binary", b"text with \x1b escape\n", "caf\u00e9\n".encode("latin-1")):
        entry = cloudinit.write_file_entry(NodeFile("/etc/x", content))
        assert entry["encoding"] == "b64" and base64.b64decode(entry["content"]) == content
    entry = cloudinit.write_file_entry(NodeFile("/etc/x", "café\tok\n".encode()))
    assert "encoding" not in entry and entry["content"] == "café\tok\n"


@settings(max_examples=200, deadline=None)
@given(
    content=st.one_of(
        st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8", "replace"))
    )
)
def test_any_content_survives_the_yaml_round_trip(content: bytes) -> None:
    doc = {"write_files": [cloudinit.write_file_entry(NodeFile("/etc/x", content))]}
    loaded = yaml.safe_load("#cloud-config\n" + yamlio.dump(doc))["write_files"][0]
    raw = loaded["content"]
    assert (base64.b64decode(raw) if loaded.get("encoding") == "b64" else raw.encode()) == content


def test_conflicting_files_are_refused() -> None:
    plan = plan_of("single-master")
    node = plan.node("cp-1")
    clash = [secret("/etc/modules-load.d/k8s.conf", b"other\n")]
    with pytest.raises(BakeError, match="two different files"):
        cloudinit.render_node(plan, node, pki_files=clash, token=TOKEN, ca_hash=CA_HASH)


# --------------------------------------------------------------------------------------------------
# users and passwords


def _profile_with(mutate: Any) -> Profile:
    data = yamlio.load_document(resources.profile_text("single-master") or b"", source="single-master")
    mutate(data)
    return validate(data)


def test_password_is_hashed_deterministically_and_never_clear() -> None:
    def with_password(data: dict[str, Any]) -> None:
        data["defaults"]["users"] = [{"name": "ops", "sudo": True, "password": "s3cret-Passw0rd"}]

    plan = build_plan(_profile_with(with_password))
    first = render(plan, plan.node("cp-1")).user_data
    assert first == render(plan, plan.node("cp-1")).user_data
    assert b"s3cret-Passw0rd" not in first
    doc = _load(first)
    user = doc["users"][0]
    assert user["lock_passwd"] is False and doc["ssh_pwauth"] is True
    assert user["passwd"].startswith(f"$6$rounds={cloudinit.PASSWORD_ROUNDS}$")
    assert glibc_crypt("s3cret-Passw0rd", user["passwd"]) == user["passwd"]
    other = _load(render(plan, plan.node("worker-1")).user_data)["users"][0]["passwd"]
    assert other != user["passwd"]  # the node name is part of the salt


def glibc_crypt(password: str, setting: str) -> str:
    """crypt(3) of the C library, through ctypes: an implementation independent of the one bake uses,
    and one that does not need Python's `crypt` module (removed in 3.13)."""
    name = ctypes.util.find_library("crypt")
    if name is None:
        pytest.skip("no libcrypt on this machine")
    lib = ctypes.CDLL(name)
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    out = lib.crypt(password.encode(), setting.encode())
    assert out is not None
    return bytes(out).decode()


def test_password_hashing_needs_no_crypt_module_and_matches_glibc() -> None:
    """As on Python >= 3.13: no `crypt` module, and no deprecated import on the way (passlib 1.7 imported
    `crypt`, which warns on 3.11-3.12 and is gone in 3.13; libpass does not)."""
    code = (
        "import sys\n"
        "from builder.node.cloudinit import hash_password\n"
        "print(hash_password('c1', 'cp-1', 'ops', 'pässwörd with spaces'))\n"
        "print('crypt' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", code],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    hashed, crypt_imported = proc.stdout.split()
    assert crypt_imported == "False", "hashing must not use the `crypt` module (removed in Python 3.13)"
    assert hashed.startswith(f"$6$rounds={cloudinit.PASSWORD_ROUNDS}$")
    assert glibc_crypt("pässwörd with spaces", hashed) == hashed
    assert glibc_crypt("another password", hashed) != hashed


def test_password_hash_is_passed_as_is() -> None:
    given = "$6$abcdefgh$" + "x" * 86

    def with_hash(data: dict[str, Any]) -> None:
        data["defaults"]["users"] = [{"name": "ops", "passwordHash": given}]

    plan = build_plan(_profile_with(with_hash))
    assert _load(render(plan, plan.node("cp-1")).user_data)["users"][0]["passwd"] == given


def test_salt_alphabet() -> None:
    salt = cloudinit.password_salt("c", "n", "u", "p")
    assert len(salt) == 16 and set(salt) <= set(cloudinit._CRYPT_ALPHABET)
    assert salt != cloudinit.password_salt("c", "n", "u", "q")


# --------------------------------------------------------------------------------------------------
# injection

PAYLOADS = (
    "a: b",
    "x # not a comment",
    "'single' \"double\"",
    "$(touch pwned-dollar)",
    "`touch pwned-backtick`",
    "a; touch pwned-semicolon",
    "- item",
    "{flow: map}",
    "&anchor *alias !!python/object:os.system",
    "| > % @ ` \\",
)


def _env_of(rendered: cloudinit.RenderedNode) -> str:
    return next(f.content.decode() for f in rendered.files if f.path == bootstrap.layout.ENV_PATH)


def _source_env(env_text: str, cwd: Path) -> dict[str, str]:
    (cwd / "bootstrap.env").write_text(env_text)
    names = bootstrap.env.ENV_NAMES
    script = "set -euo pipefail; . ./bootstrap.env; " + " ".join(f'printf "%s\\0" "${n}";' for n in names)
    out = subprocess.run(
        ["bash", "-c", script], cwd=cwd, capture_output=True, check=True, env={"PATH": "/usr/bin:/bin"}
    )
    return dict(zip(names, (v.decode() for v in out.stdout.split(b"\0")[:-1]), strict=True))


def _parse_env(env_text: str) -> dict[str, str]:
    out = {}
    for line in env_text.splitlines():
        if line.startswith("#"):
            continue
        name, _, quoted = line.partition("=")
        words = shlex.split(quoted)
        out[name] = words[0] if words else ""
    return out


def test_profile_strings_cannot_change_the_yaml_structure(tmp_path: Path) -> None:
    baseline_plan = plan_of("single-master")
    baseline = {n.name: _load(render(baseline_plan, n).user_data) for n in baseline_plan.nodes}
    for payload in PAYLOADS:
        key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKey " + payload
        multiline = payload + "\nsecond: line\n- third"

        def mutate(
            data: dict[str, Any], payload: str = payload, key: str = key, multiline: str = multiline
        ) -> None:
            data["defaults"]["users"] = [
                {"name": "ops", "sudo": True, "groups": [payload, "adm"], "sshAuthorizedKeys": [key]}
            ]
            data["cluster"]["apiServer"] = {"extraArgs": [{"name": "audit-policy-file", "value": multiline}]}
            data["nodes"][1]["kubeletExtraArgs"] = [{"name": "node-status-max-images", "value": payload}]

        plan = build_plan(_profile_with(mutate))
        for node in plan.nodes:
            rendered = render(plan, node)
            doc = _load(rendered.user_data)
            base = baseline[node.name]
            assert list(doc) == list(base)
            assert [w["path"] for w in doc["write_files"]] == [w["path"] for w in base["write_files"]]
            assert doc["users"][0]["groups"] == [payload, "adm"]
            assert doc["users"][0]["ssh_authorized_keys"] == [key]
            assert doc["runcmd"] == base["runcmd"]
            written = _write_files(rendered.user_data)
            config_path = next(p for p in written if p.startswith("/run/kubeadm/"))
            docs = list(yaml.safe_load_all(written[config_path][0]))
            if node.is_init:
                cluster = next(d for d in docs if d["kind"] == "ClusterConfiguration")
                assert {"name": "audit-policy-file", "value": multiline} in cluster["apiServer"]["extraArgs"]
            if node.name == "worker-1":
                join = next(d for d in docs if d["kind"] == "JoinConfiguration")
                args = join["nodeRegistration"]["kubeletExtraArgs"]
                assert {"name": "node-status-max-images", "value": payload} in args
            # The env file: sourced, it gives back exactly what it says, and runs nothing.
            env = _env_of(rendered)
            assert _source_env(env, tmp_path) == _parse_env(env)
            assert sorted(p.name for p in tmp_path.iterdir()) == ["bootstrap.env"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("labels", {"team": "a: b"}),
        ("labels", {"x$(touch pwned)": "y"}),
        ("certSANs", ["evil.example\n- injected"]),
        ("certSANs", ["$(touch pwned).example"]),
    ],
)
def test_unsafe_labels_and_sans_are_refused(field: str, value: Any) -> None:
    def mutate(data: dict[str, Any]) -> None:
        if field == "labels":
            data["nodes"][1]["labels"] = value
        else:
            data["cluster"]["apiServer"] = {"certSANs": value}

    with pytest.raises(BakeError):
        plan = build_plan(_profile_with(mutate))
        for node in plan.nodes:
            render(plan, node)


def test_base_url_reaches_the_env_file_only_quoted(tmp_path: Path) -> None:
    url = "https://mirror.example/k8s;touch>pwned-1&&id|tee>pwned-2#"

    def mutate(data: dict[str, Any]) -> None:
        data["cluster"]["packages"] = {"aptBaseUrl": url}

    plan = build_plan(_profile_with(mutate))
    env = _env_of(render(plan, plan.node("worker-1")))
    values = _source_env(env, tmp_path)
    # The hostile URL arrives whole, as one word, beside the default containerd repository's key.
    assert values["BAKE_APT_KEY_URLS"].split(" ") == [
        f"{url}/core:/stable:/v1.37/deb/Release.key",
        "https://download.docker.com/linux/ubuntu/gpg",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bootstrap.env"]


# --------------------------------------------------------------------------------------------------
# determinism and instance-id


def test_rendering_is_deterministic_across_processes() -> None:
    code = (
        "import hashlib; import tests.test_cloudinit as t; "
        "p = t.plan_of('ha-stacked'); "
        "print(hashlib.sha256(b''.join(t.render(p, n).user_data for n in p.nodes)).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(digests) == 1


# --------------------------------------------------------------------------------------------------
# golden files


def golden_seeds(profile: str) -> dict[str, dict[str, bytes]]:
    """Every node's seed as the bake renders it from the profile's fixture bundle, in profile order."""
    plan = golden_plan(profile)
    bundle = secrets.load_bundle(BUNDLES / profile)
    assert bundle is not None, f"no bundle for {profile}: `make golden` creates it"
    seeds = {}
    for node in plan.nodes:
        rendered = cloudinit.render_node(
            plan,
            node,
            pki_files=distribute.node_pki_files(plan, node, bundle),
            token=bundle_token(profile),
            ca_hash=bundle_ca_hash(profile),
        )
        seeds[node.name] = {
            "user-data": rendered.user_data,
            "meta-data": rendered.meta_data,
            "network-config": rendered.network_config,
        }
    return seeds


@pytest.mark.parametrize("profile", GOLDEN_PROFILES)
def test_golden(profile: str) -> None:
    wanted = split(golden_seeds(profile))
    root = GOLDEN / profile
    for rel, data in sorted(wanted.items()):
        compare_golden(root / rel, data)
    stored = [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]
    assert sorted(rel for rel in stored if rel != "manifest.json") == sorted(wanted), "stale golden files"
