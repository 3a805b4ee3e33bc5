"""Fast tests of the harness parts that need no VM: check.py, kubelet-standin, ISOs, serial parsing, CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pycdlib
import pytest

from ..peers import missing
from . import expect, image, nodecheck, seeds
from .cli import load_profile_specs, main
from .harness import (
    HarnessError,
    VmSpec,
    kernel_cmdline,
    make_check_iso,
    make_seed_iso,
    parse_serial,
    qemu_argv,
    run_vms,
)

GUEST = Path(__file__).resolve().parent / "guest"
# The guest runs Debian's python3; use it when present so the stdlib-only promise is tested too.
GUEST_PY = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def run_checks(tmp_path: Path, *checks: dict[str, Any], boot: int = 1) -> dict[str, dict[str, Any]]:
    exp = tmp_path / "expectations.json"
    exp.write_text(json.dumps(expect.expectations(*checks)))
    proc = subprocess.run(
        [GUEST_PY, str(GUEST / "check.py"), str(exp)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "BAKE_TEST_BOOT": str(boot)},
        check=True,
    )
    results = json.loads(proc.stdout)["checks"]
    assert len(results) == len(checks)
    return {r["name"]: r for r in results}


def test_check_file_mode_owner_sha(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("hi\n")
    f.chmod(0o640)
    owner = f.owner()
    r = run_checks(
        tmp_path,
        expect.file(str(f), mode=0o640, owner=owner, content="hi\n", contains="hi", name="good"),
        expect.file(str(f), mode=0o600, name="mode"),
        expect.file(str(f), sha256=hashlib.sha256(b"other").hexdigest(), name="sha"),
        expect.file(str(f), owner="nobody-such-user", name="owner"),
        expect.file(str(tmp_path), type="dir", name="dir"),
        expect.file(str(tmp_path / "missing"), name="missing"),
        expect.file(str(f), not_contains="hi", name="not_contains"),
    )
    assert r["good"]["ok"] and r["dir"]["ok"], r
    for bad in ("mode", "sha", "owner", "missing", "not_contains"):
        assert not r[bad]["ok"], r[bad]
    assert "mode 0640, want 0600" in r["mode"]["detail"]
    assert "does not exist" in r["missing"]["detail"]


def test_check_absent_and_glob(tmp_path: Path) -> None:
    (tmp_path / "pki" / "etcd").mkdir(parents=True)
    (tmp_path / "pki" / "etcd" / "ca.key").write_text("k")
    (tmp_path / "pki" / "ca.crt").write_text("c")
    r = run_checks(
        tmp_path,
        expect.absent(str(tmp_path / "nope"), name="absent ok"),
        expect.absent(str(tmp_path / "pki"), name="absent bad"),
        expect.glob_absent(str(tmp_path / "pki"), "*.key", name="key found"),
        expect.glob_absent(str(tmp_path / "pki"), "*.pem", name="no pem"),
        expect.glob_absent(str(tmp_path / "pki"), "etcd/*.key", name="path pattern"),
        expect.glob_absent(str(tmp_path / "not-there"), "*", name="no root"),
    )
    assert r["absent ok"]["ok"] and not r["absent bad"]["ok"]
    assert not r["key found"]["ok"] and "etcd/ca.key" in r["key found"]["detail"]
    assert r["no pem"]["ok"] and r["no root"]["ok"]
    assert not r["path pattern"]["ok"]
    key, crt = str(tmp_path / "pki" / "etcd" / "ca.key"), str(tmp_path / "pki" / "ca.crt")
    r = run_checks(
        tmp_path,
        expect.only_files(str(tmp_path / "pki"), [key, crt], name="exact"),
        expect.only_files(str(tmp_path / "pki"), [crt], name="extra key"),
        expect.only_files(str(tmp_path / "pki"), [key, crt, crt + ".x"], name="missing"),
        expect.only_files(str(tmp_path / "nowhere"), [], name="empty"),
    )
    assert r["exact"]["ok"] and r["empty"]["ok"]
    assert not r["extra key"]["ok"] and "etcd/ca.key" in r["extra key"]["detail"]
    assert not r["missing"]["ok"] and "ca.crt.x" in r["missing"]["detail"]


def test_check_system_kinds(tmp_path: Path) -> None:
    host = socket.gethostname()
    r = run_checks(
        tmp_path,
        expect.hostname(host, name="hostname"),
        expect.hostname(host + "-not", name="wrong hostname"),
        expect.sysctl("kernel.ostype", "Linux", name="sysctl"),
        expect.sysctl("kernel.ostype", "Plan9", name="wrong sysctl"),
        expect.sysctl("no.such.key", "1", name="missing sysctl"),
        expect.address("02:00:00:00:00:99", "10.99.0.1/24", name="no such mac"),
        expect.module("surely_not_a_module", name="module"),
        expect.swap_off(name="swap"),
    )
    assert r["hostname"]["ok"] and not r["wrong hostname"]["ok"]
    assert r["sysctl"]["ok"] and not r["wrong sysctl"]["ok"] and not r["missing sysctl"]["ok"]
    assert not r["no such mac"]["ok"] and "no interface" in r["no such mac"]["detail"]
    assert not r["module"]["ok"]
    swaps = Path("/proc/swaps").read_text().splitlines()[1:]
    assert r["swap"]["ok"] == (not any(s.strip() for s in swaps))


def test_check_command_retries_boots_and_unknown_kind(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    r = run_checks(
        tmp_path,
        expect.command(["echo", "hello world"], contains="hello", regex=r"^hello", name="echo"),
        expect.command("exit 3", rc=3, name="rc3"),
        expect.command("exit 3", name="rc3 unexpected"),
        expect.command("echo x", rc=None, not_contains="x", name="not_contains"),
        expect.command("sleep 5", timeout=1, name="timeout"),
        # becomes true on the 2nd try: wait_s retries
        expect.command(f"test -e {flag} || {{ touch {flag}; exit 1; }}", wait_s=10, name="retry"),
        expect.command("exit 1", boots=[2], name="other boot"),
        {"kind": "no-such-kind", "name": "unknown"},
        expect.tcp(1, name="closed port"),
    )
    assert r["echo"]["ok"] and r["rc3"]["ok"]
    assert not r["rc3 unexpected"]["ok"] and "exit 3, want 0" in r["rc3 unexpected"]["detail"]
    assert not r["not_contains"]["ok"]
    assert not r["timeout"]["ok"] and "timed out" in r["timeout"]["detail"]
    assert r["retry"]["ok"] and r["retry"]["tries"] == 2
    assert r["other boot"]["ok"] and r["other boot"]["skipped"]
    assert not r["unknown"]["ok"] and not r["closed port"]["ok"]


def test_check_unit_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        missing("systemd-analyze is not installed (apt-get install systemd)")
    good = tmp_path / "good.service"
    good.write_text("[Unit]\nDescription=x\n[Service]\nType=oneshot\nExecStart=/bin/true\n")
    bad = tmp_path / "bad.service"
    bad.write_text("[Unit]\nDescription=x\n[Service]\nType=oneshot\nExecStart=true-relative\nBogus=1\n")
    dropin = tmp_path / "yaml.service"
    dropin.write_text("[Unit]\nDescription=x\n[Service]\nType=oneshot\nExecStart=/bin/true\n")
    (tmp_path / "yaml.service.d").mkdir()
    (tmp_path / "yaml.service.d" / "kubelet.conf").write_text("apiVersion: v1\nkind: KubeletConfiguration\n")
    allow = [r"kubelet\.conf:\d+: Assignment outside of section\. Ignoring\.$"]
    r = run_checks(
        tmp_path,
        expect.unit_verify(str(good), name="good"),
        expect.unit_verify(str(bad), name="bad"),
        expect.unit_verify(str(dropin), name="yaml drop-in"),
        expect.unit_verify(str(dropin), allow=allow, name="yaml drop-in allowed"),
    )
    assert r["good"]["ok"], r["good"]
    assert not r["bad"]["ok"], r["bad"]
    assert not r["yaml drop-in"]["ok"] and "Assignment outside of section" in r["yaml drop-in"]["detail"]
    assert r["yaml drop-in allowed"]["ok"], r["yaml drop-in allowed"]


def standin(manifest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GUEST / "kubelet-standin"), *args, str(manifest)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_kubelet_standin_resolves_the_etcd_pod(tmp_path: Path) -> None:
    m = tmp_path / "etcd.yaml"
    m.write_text(seeds.ETCD_MANIFEST)
    proc = standin(m, "--dry-run", "--drop-flag", "initial-cluster")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["argv"][0] == "/usr/bin/etcd"
    assert "--data-dir=/var/lib/etcd" in plan["argv"]
    assert plan["dropped"] == ["--initial-cluster=standin=http://127.0.0.1:2380"]
    assert plan["mounts"] == [
        {
            "container": "/var/lib/etcd",
            "host": "/var/lib/etcd-standin",
            "read_only": False,
            "type": "DirectoryOrCreate",
        }
    ]
    # kubelet mode: the one manifest of a KubeletConfiguration's staticPodPath (an etcd member's drop-in)
    pods = tmp_path / "manifests"
    pods.mkdir()
    (pods / "etcd.yaml").write_text(seeds.ETCD_MANIFEST)
    cfg = tmp_path / "kubelet.conf"
    cfg.write_text(
        f"apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: {pods}\n"
    )
    proc = subprocess.run(
        [sys.executable, str(GUEST / "kubelet-standin"), "--dry-run", "--kubelet-config", str(cfg)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and json.loads(proc.stdout)["argv"][0] == "/usr/bin/etcd", proc.stderr
    (pods / "other.yaml").write_text(seeds.ETCD_MANIFEST)
    proc = subprocess.run(
        [sys.executable, str(GUEST / "kubelet-standin"), "--dry-run", "--kubelet-config", str(cfg)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "holds 2 manifests" in proc.stderr
    wrapper = subprocess.run(
        ["sh", str(GUEST / "kubelet"), "--config=/x", "--v=2"], capture_output=True, text=True, check=False
    )
    assert wrapper.returncode == 2 and "unsupported argument: --v=2" in wrapper.stderr
    m.write_text(seeds.ETCD_MANIFEST.replace("hostNetwork: true", "hostNetwork: false"))
    proc = standin(m, "--dry-run")
    assert proc.returncode == 2 and "hostNetwork" in proc.stderr
    m.write_text(seeds.ETCD_MANIFEST.replace("    - etcd\n", "    - kube-apiserver\n", 1))
    proc = standin(m, "--dry-run")
    assert proc.returncode == 2 and "no Debian binary mapped" in proc.stderr


@pytest.mark.integration
def test_kubelet_standin_runs_real_etcd_on_loopback(tmp_path: Path) -> None:
    if not (Path("/usr/bin/etcd").exists() and shutil.which("etcdctl")):
        missing("etcd-server / etcd-client are not installed")
    with socket.socket() as s1, socket.socket() as s2:
        s1.bind(("127.0.0.1", 0))
        s2.bind(("127.0.0.1", 0))
        client, peer = s1.getsockname()[1], s2.getsockname()[1]
    data = tmp_path / "data"
    manifest = (
        seeds.ETCD_MANIFEST.replace("2379", str(client))
        .replace("2380", str(peer))
        .replace("/var/lib/etcd-standin", str(data))
        .replace("/var/lib/etcd", str(data))
    )
    m = tmp_path / "etcd.yaml"
    m.write_text(manifest)
    log = (tmp_path / "etcd.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(GUEST / "kubelet-standin"), str(m)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        out = ""
        while time.monotonic() < deadline:
            health = subprocess.run(
                ["etcdctl", f"--endpoints=http://127.0.0.1:{client}", "endpoint", "health"],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
            out = health.stdout + health.stderr
            if health.returncode == 0:
                break
            assert proc.poll() is None, (tmp_path / "etcd.log").read_text()
            time.sleep(0.5)
        assert "is healthy" in out, out + (tmp_path / "etcd.log").read_text()
        assert (data / "member").is_dir()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def _iso_files(path: Path) -> tuple[str, dict[str, bytes]]:
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        label = iso.pvd.volume_identifier.decode().strip()
        files: dict[str, bytes] = {}
        for child in iso.list_children(rr_path="/"):
            if child.is_file():
                name = child.rock_ridge.name().decode()
                buf = __import__("io").BytesIO()
                iso.get_file_from_iso_fp(buf, rr_path=f"/{name}")
                files[name] = buf.getvalue()
        return label, files
    finally:
        iso.close()


def test_isos_have_labels_and_rock_ridge_names(tmp_path: Path) -> None:
    exp = expect.expectations(expect.hostname("x"))
    label, files = _iso_files(make_check_iso(tmp_path / "c.iso", exp))
    assert label == "baketest"
    assert files["check.py"] == (GUEST / "check.py").read_bytes()
    assert json.loads(files["expectations.json"]) == exp
    seed = make_seed_iso(
        tmp_path / "s.iso",
        user_data="#cloud-config\n",
        meta_data="instance-id: a\n",
        network_config="version: 2\n",
    )
    label, files = _iso_files(seed)
    assert label == "cidata" and set(files) == {"user-data", "meta-data", "network-config"}
    with pytest.raises(HarnessError):
        make_check_iso(tmp_path / "bad.iso", {"nope": []})


def test_seed_user_data_passes_cloud_init_schema(tmp_path: Path) -> None:
    if shutil.which("cloud-init") is None:
        missing("cloud-init is not installed on the host")
    ud = tmp_path / "user-data"
    ud.write_text(seeds.user_data("bake-x"))
    proc = subprocess.run(
        ["cloud-init", "schema", "--config-file", str(ud)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_parse_serial_tolerates_noise_and_dedups_boots() -> None:
    good1 = json.dumps({"boot": 1, "ok": True, "checks": []})
    good2 = json.dumps({"boot": 2, "ok": False, "checks": [{"name": "x", "ok": False}]})
    text = "\r\n".join(
        [
            "[  1.0] kernel noise",
            f"BAKE-TEST-RESULT {good1}\r",
            f"garbage-before BAKE-TEST-RESULT {good1}",
            "BAKE-TEST-RESULT {not json",
            f"BAKE-TEST-RESULT {good2}",
        ]
    )
    results, problems = parse_serial(text)
    assert [r["boot"] for r in results] == [1, 2]
    assert results[1]["ok"] is False
    assert len(problems) == 1 and "unparsable" in problems[0]


def test_qemu_argv_per_arch(tmp_path: Path) -> None:
    img = image.GuestImage("amd64", tmp_path, tmp_path / "k", tmp_path / "i", tmp_path / "r")
    seed = tmp_path / "seed.iso"
    spec = VmSpec("n1", "amd64", seed, "52:54:00:00:00:01", expectations={"checks": []})
    argv = qemu_argv(spec, img, tmp_path / "n1", tmp_path / "sw", ["-accel", "tcg"], 300)
    assert argv[0] == "qemu-system-x86_64" and "-no-reboot" in argv
    assert "mac=52:54:00:00:00:01" in " ".join(argv) and f"sock={tmp_path / 'sw'}" in " ".join(argv)
    assert sum(a.startswith("virtio-blk-pci") for a in argv) == 3
    assert "console=ttyS0" in kernel_cmdline(spec, 300) and "bake.test=1" in kernel_cmdline(spec, 300)
    arm = VmSpec("n2", "arm64", seed, "52:54:00:00:00:02", reboots=2)
    argv = qemu_argv(arm, img, tmp_path / "n2", tmp_path / "sw", ["-accel", "tcg,thread=multi"], 300)
    assert argv[0] == "qemu-system-aarch64" and "virt" in argv and "-no-reboot" not in argv
    assert sum(a.startswith("virtio-blk-pci") for a in argv) == 2
    assert "console=ttyAMA0" in kernel_cmdline(arm, 300) and "bake.test.reboots=2" in kernel_cmdline(arm, 300)
    assert "bake.test.hold=1" not in kernel_cmdline(arm, 300) and "bake.test.hold=1" in kernel_cmdline(
        arm, 300, True
    )

    waiting = VmSpec(
        "n3", "amd64", seed, "52:54:00:00:00:03", test_stop=("after-waits", "wait-seconds=30"),
        bootstrap_fails_on=(1,), reboots=1,
    )  # fmt: skip
    line = kernel_cmdline(waiting, 300)
    assert "bake.test.stop=after-waits,wait-seconds=30" in line and "bake.test.bootstrap-fails=1" in line
    # No image ships the test stop: the default spec asks for it, a real-kubeadm spec does not.
    assert "bake.test.stop=before-waits" in kernel_cmdline(spec, 300).split()
    real = VmSpec(
        "n4", "amd64", seed, "52:54:00:00:00:04", test_stop=None, image="k8s",
        host_forwards=((16443, 6443),), extra_disks=(tmp_path / "images.iso",), cpus=2,
    )  # fmt: skip
    assert "bake.test.stop" not in kernel_cmdline(real, 300)
    assert "bake.test.hostnic=52:54:01:00:00:04" in kernel_cmdline(real, 300).split()
    argv = qemu_argv(real, img, tmp_path / "n4", tmp_path / "sw", ["-accel", "tcg"], 300)
    assert "user,id=h0,restrict=on,hostfwd=tcp:127.0.0.1:16443-:6443" in argv
    assert "virtio-net-pci,netdev=h0,mac=52:54:01:00:00:04" in argv
    assert f"if=none,id=extra0,file={tmp_path / 'images.iso'},format=raw,readonly=on" in argv


def test_run_vms_rejects_bad_specs_before_booting(tmp_path: Path) -> None:
    seed = tmp_path / "seed.iso"
    seed.write_bytes(b"x")
    a = VmSpec("a", "amd64", seed, "52:54:00:00:00:01")
    for bad in (
        [a, VmSpec("a", "amd64", seed, "52:54:00:00:00:02")],
        [VmSpec("b", "amd64", seed, "not-a-mac")],
        [VmSpec("c", "sparc", seed, "52:54:00:00:00:03")],
        [VmSpec("d", "amd64", tmp_path / "missing.iso", "52:54:00:00:00:04")],
        [VmSpec("e", "amd64", seed, "52:54:00:00:00:05", test_stop=("wait seconds=1",))],
        [VmSpec("f", "amd64", seed, "52:54:00:00:00:06", image="gentoo")],
        [VmSpec("g", "amd64", seed, "52:54:00:00:00:07", host_forwards=((0, 6443),))],
        [VmSpec("h", "amd64", seed, "52:54:00:00:00:08", extra_disks=(tmp_path / "nope.iso",))],
    ):
        with pytest.raises(HarnessError):
            run_vms(bad, workdir=tmp_path / "w", timeout_s=10)


def _baked_tree(tmp_path: Path, profile: str = "single-master", *sets: str) -> Path:
    argv = [
        sys.executable, "-m", "builder.cli", "--profile", profile, "--out", str(tmp_path / "out"),
        "--secrets", str(tmp_path / "secrets"),
        "--set", "cluster.packages.mode=prebaked", "--set", "cluster.encryptionAlgorithm=ECDSA-P256",
        *(x for s in sets for x in ("--set", s)), "-q",
    ]  # fmt: skip
    subprocess.run(argv, check=True, capture_output=True, cwd=image.repo_root(), timeout=300)
    return tmp_path / "out" / profile


def test_profile_specs_from_a_baked_tree(tmp_path: Path) -> None:
    out = _baked_tree(tmp_path)
    (out / "nodes" / "worker-1" / "vm-expectations.json").write_text(
        json.dumps(expect.expectations(expect.hostname("extra-check")))
    )
    pairs = load_profile_specs(out, memory_mb=768, reboots=1)
    specs = {s.name: s for s, _ in pairs}
    assert set(specs) == {"cp-1", "worker-1", "worker-2"}
    w1 = specs["worker-1"]
    assert w1.arch == "amd64" and w1.memory_mb == 768 and w1.reboots == 1
    assert specs["cp-1"].seed_iso == out / "nodes" / "cp-1" / "seed.iso"
    checks = w1.expectations["checks"]  # type: ignore[index]
    by_name = {c.get("name"): c for c in checks}
    assert by_name["hostname"] == {"kind": "hostname", "equals": "worker-1", "name": "hostname"}
    assert by_name["worker: no private key"]["pattern"] == "*.key"
    assert by_name["bootstrap stopped before: kubeadm join --config /run/kubeadm/kubeadm-join-config.yaml"]
    assert "no /run/kubeadm/kubeadm.yaml (another role's file)" in by_name  # the init node's config
    assert checks[-1] == {"kind": "hostname", "equals": "extra-check"}  # vm-expectations.json appended
    manifest = json.loads((out / "manifest.json").read_text())
    files = {f["path"]: f for n in manifest["nodes"] if n["name"] == "worker-1" for f in n["files"]}
    env = by_name["baked file /etc/bake/bootstrap.env"]
    assert env["sha256"] == files["/etc/bake/bootstrap.env"]["sha256"] and env["mode"] == "0644"
    cp = {c.get("name"): c for c in specs["cp-1"].expectations["checks"]}  # type: ignore[index]
    assert "boots" not in cp["bootstrap stopped before: kubeadm init --config /run/kubeadm/kubeadm.yaml"]
    assert "worker: no private key" not in cp


def test_tree_whose_manifest_lies_is_refused(tmp_path: Path) -> None:
    out = _baked_tree(tmp_path)
    real = out.resolve()
    manifest = json.loads((real / "manifest.json").read_text())
    manifest["nodes"][1]["files"][0]["mode"] = "0600"
    (real / "manifest.json").unlink()
    (real / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(HarnessError, match="contradicts itself"):
        load_profile_specs(out, memory_mb=512, reboots=0)
    (real / "manifest.json").write_text(json.dumps({"nodes": [{"name": "x"}]}))
    with pytest.raises(HarnessError):
        load_profile_specs(out, memory_mb=512, reboots=0)


def test_baked_nodes_read_back(tmp_path: Path) -> None:
    _, nodes = nodecheck.load_tree(_baked_tree(tmp_path, "ha-external-etcd"))
    roles = {n.name: n.bootstrap_role for n in nodes}
    assert roles["etcd-1"] == "etcd" and roles["cp-1"] == "init" and roles["cp-2"] == "join-control-plane"
    assert roles["worker-1"] == "worker"
    etcd = next(n for n in nodes if n.name == "etcd-1")
    assert etcd.stop_command == "systemctl daemon-reload && systemctl restart kubelet"
    assert etcd.kubeadm_config is None and etcd.address == "10.77.0.31/24"
    assert nodecheck.sandbox_image(etcd).startswith("registry.k8s.io/pause:")
    names = {c.get("name") for c in nodecheck.node_checks(etcd, nodes)}
    assert "systemd-analyze verify kubelet.service with the etcd drop-in" in names
    assert {"etcd member: no cluster CA key", "etcd member: its etcd CA key, 0600"} <= names


def test_cli_reports_a_bad_profile_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--profile-dir", str(tmp_path / "nowhere")]) == 2
    assert "manifest.json" in capsys.readouterr().err


def test_recipe_hash_tracks_packages_and_guest_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    h = image.recipe_hash("amd64")
    assert h == image.recipe_hash("amd64") and len(h) == 12
    assert h != image.recipe_hash("arm64")
    assert image.image_dir("amd64").name == f"amd64-{h}"
    monkeypatch.setattr(image, "COMMON_PACKAGES", (*image.COMMON_PACKAGES, "jq"))
    assert image.recipe_hash("amd64") != h
    monkeypatch.undo()
    guest = tmp_path / "guest"
    shutil.copytree(image.GUEST_DIR, guest)
    monkeypatch.setattr(image, "GUEST_DIR", guest)
    assert image.recipe_hash("amd64") == h
    (guest / "kubelet-standin").write_text((guest / "kubelet-standin").read_text() + "\n# changed\n")
    assert image.recipe_hash("amd64") != h
    with pytest.raises(ValueError):
        image.recipe_hash("sparc")


def test_k8s_recipe_hash_tracks_the_built_binaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The k8s image's key has every built binary's sha256 in it; a missing one is named, not guessed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in (*image.K8S_BINARIES, *image.cni_plugins("amd64")):
        (bin_dir / name).write_bytes(f"#!/bin/sh\necho {name}\n".encode())
    monkeypatch.setenv("BAKE_K8S_BIN", str(bin_dir))
    h = image.recipe_hash("amd64", "k8s")
    assert h != image.recipe_hash("amd64") and image.image_dir("amd64", "k8s").name == f"amd64-k8s-{h}"
    placed = {p.path: p.source.name for p in image.payload("amd64", "k8s")}
    assert placed["/usr/bin/kubeadm"] == "kubeadm" and placed["/opt/cni/bin/bridge"] == "bridge"
    assert "/opt/cni/bin/flannel" not in placed  # flannel's DaemonSet installs its plugin itself
    assert placed["/usr/local/bin/containerd"] == "containerd"
    (bin_dir / "kubelet").write_bytes(b"another kubelet")
    assert image.recipe_hash("amd64", "k8s") != h
    (bin_dir / "crictl").unlink()
    with pytest.raises(image.ImageBuildError, match="missing crictl"):
        image.recipe_hash("amd64", "k8s")
    monkeypatch.setenv("BAKE_K8S_BIN", str(tmp_path / "nowhere"))
    with pytest.raises(image.ImageBuildError, match="make k8s"):
        image.payload("amd64", "k8s")
    with pytest.raises(ValueError):
        image.recipe_hash("amd64", "gentoo")
