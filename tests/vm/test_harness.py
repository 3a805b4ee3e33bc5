"""The harness proves itself on hand-made seeds: real QEMU (TCG) guests, results read from their consoles."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from . import expect, seeds
from .harness import VmSpec, run_vms
from .image import GuestImage

pytestmark = pytest.mark.vm

MAC1, IP1 = "52:54:00:ba:ce:01", "10.77.0.11"


def _checks(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in result["checks"]}


def _core_checks(hostname: str, mac: str, ip: str) -> list[dict[str, Any]]:
    return [
        expect.file(
            "/etc/bake-test/hello.txt",
            mode=0o640,
            owner="root",
            group="root",
            content=seeds.HELLO,
            name="hello file",
        ),
        expect.hostname(hostname, name="hostname"),
        expect.address(mac, f"{ip}/24", name="address on MAC"),
        expect.file(
            "/var/lib/bake/bootstrap.stopped", contains="kubeadm", name="bootstrap stopped before kubeadm"
        ),
        expect.absent("/var/lib/bake/bootstrap.done", name="bootstrap not done"),
        expect.file("/etc/bake/test-stop-before-kubeadm", name="test stop installed by the harness"),
        expect.swap_off(name="swap off"),
        expect.sysctl("kernel.hostname", hostname, name="sysctl hostname"),
        expect.unit_verify("bake-bootstrap.service", name="bootstrap unit verifies"),
        expect.unit("containerd.service", active=True, wait_s=60, name="containerd active"),
        expect.module("overlay", wait_s=30, name="overlay module"),
    ]


def _etcd_checks() -> list[dict[str, Any]]:
    return [
        expect.kubelet_standin(
            ready_port=2379, ready_timeout=120, name="etcd static pod via kubelet-standin", boots=[1]
        ),
        expect.command(
            ["etcdctl", "--endpoints=http://127.0.0.1:2379", "endpoint", "health"],
            contains="is healthy",
            wait_s=30,
            name="etcd healthy",
            boots=[1],
        ),
        # the pod mounts hostPath /var/lib/etcd-standin at /var/lib/etcd: data must land in the former
        expect.file("/var/lib/etcd-standin/member", type="dir", name="etcd data bind mount", boots=[1]),
        expect.command(
            'test -z "$(ls -A /var/lib/etcd)"', name="nothing written through to /var/lib/etcd", boots=[1]
        ),
    ]


def test_amd64_seed_result_failure_and_reboot(vm_image_amd64: GuestImage, tmp_path: Path) -> None:
    seed = seeds.write_seed(tmp_path / "seed.iso", hostname="bake-t1", mac=MAC1, address=f"{IP1}/24")
    checks = [
        *_core_checks("bake-t1", MAC1, IP1),
        *_etcd_checks(),
        # state written on boot 1 must still be there on boot 2, and bootstrap ran again (not done yet)
        expect.file("/var/lib/bake-test/boots", content="2\n", boots=[2], name="boot counter"),
        expect.command(
            ["grep", "-c", "fake bake-bootstrap run", "/var/log/bake/bootstrap.log"],
            contains="2",
            boots=[2],
            name="bootstrap ran on both boots",
        ),
        # deliberately wrong: these must fail, so the whole result must not be ok
        expect.file("/etc/bake-test/hello.txt", mode=0o600, name="DELIBERATE wrong mode"),
        expect.glob_absent("/etc/bake-test", "*.txt", name="DELIBERATE glob hit"),
    ]
    spec = VmSpec("t1", "amd64", seed, MAC1, cpus=2, expectations=expect.expectations(*checks), reboots=1)
    [r] = run_vms([spec], workdir=tmp_path / "run", timeout_s=1200)  # two TCG boots, shared cores

    assert not r.timed_out and r.qemu_returncode == 0, r.explain()
    assert [x["boot"] for x in r.results] == [1, 2], r.explain()
    for boot in r.results:
        ci = boot["cloud_init"]
        assert ci["status"] == "done" and ci["status_rc"] == 0, r.explain()
        assert ci["result"]["v1"]["errors"] == [], r.explain()
        assert boot["node"] == "bake-t1"
        assert boot["bootstrap"]["present"] and boot["bootstrap"]["Result"] == "success", r.explain()
        got = _checks(boot)
        failing = {name for name, c in got.items() if not c["ok"]}
        assert failing == {"DELIBERATE wrong mode", "DELIBERATE glob hit"}, r.explain()
        assert "mode 0640, want 0600" in got["DELIBERATE wrong mode"]["detail"]
        assert "/etc/bake-test/hello.txt" in got["DELIBERATE glob hit"]["detail"]
        assert boot["ok"] is False
        assert "bootstrap_log_tail" in boot["logs"]
    first, second = (_checks(b) for b in r.results)
    assert "nic0" in first["address on MAC"]["detail"]
    assert second["etcd healthy"].get("skipped") and second["boot counter"]["ok"]
    assert r.ok is False, "a deliberately failing expectation must make the VM result fail"
    assert hashlib.sha256(seeds.HELLO.encode()).hexdigest() in str(spec.expectations)


# Several VMs on one switch (etcd members forming a cluster) and arm64 guests are proven by test_roles.py,
# which boots the baked seeds; booting hand-made seeds for them again here would only cost CI minutes.
