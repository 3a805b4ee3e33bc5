"""The built upstream components report the versions their go.mod files pin, and the image archives
import into the built containerd and run there.

Skipped only when ``make k8s`` has not built the current key yet.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.k8s import build, images

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent


def _built(arch: str) -> Path:
    bindir = build.output_dir(arch) / "bin"
    if not (build.output_dir(arch) / "versions.json").exists():
        pytest.skip(f"upstream components for {arch} are not built (make k8s)")
    return bindir


def _required(module_dir: str, module: str) -> str:
    """The version go.mod requires, read here with a plain regex (not through build.py)."""
    text = (HERE / module_dir / "go.mod").read_text()
    m = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", text, re.M)
    assert m, f"{module_dir}/go.mod does not require {module}"
    return m.group(1)


def _run(argv: list[str], **kw: object) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload]
    assert res.returncode == 0, f"{argv}: {res.stderr}"
    return str(res.stdout + res.stderr)


def test_versions_amd64() -> None:
    """Each binary says the version go.mod pins (the ldflags and the module selection both count)."""
    b = _built("amd64")
    k8s = _required("kubernetes", "k8s.io/kubernetes")
    assert _run([str(b / "kubeadm"), "version", "-o", "short"]).strip() == k8s
    for name in ("kubelet", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"):
        assert _run([str(b / name), "--version"]).strip() == f"Kubernetes {k8s}", name
    client = json.loads(_run([str(b / "kubectl"), "version", "--client", "-o", "json"]))
    assert client["clientVersion"]["gitVersion"] == k8s
    assert client["clientVersion"]["gitTreeState"] == "clean"

    etcd = _required("etcd", "go.etcd.io/etcd/server/v3").lstrip("v")
    assert f"etcd Version: {etcd}\n" in _run([str(b / "etcd"), "--version"])
    assert f"etcdctl version: {etcd}\n" in _run([str(b / "etcdctl"), "version"])
    assert f"etcdutl version: {etcd}\n" in _run([str(b / "etcdutl"), "version"])

    ctd = _required("containerd", "github.com/containerd/containerd/v2")
    assert _run([str(b / "containerd"), "--version"]).split()[:3] == [
        "containerd",
        "github.com/containerd/containerd/v2",
        ctd,
    ]
    assert _run([str(b / "ctr"), "--version"]).split()[2] == ctd
    assert f"Version:  {ctd}\n" in _run([str(b / "containerd-shim-runc-v2"), "-v"])

    crictl = _required("cri-tools", "sigs.k8s.io/cri-tools")
    assert _run([str(b / "crictl"), "--version"]).strip() == f"crictl version {crictl}"
    coredns = _required("coredns", "github.com/coredns/coredns").lstrip("v")
    assert _run([str(b / "coredns"), "-version"]).splitlines()[0] == f"CoreDNS-{coredns}"
    flannel = _required("flannel", "github.com/flannel-io/flannel")
    assert _run([str(b / "flanneld"), "--version"]).strip() == flannel

    cni = _required("cni-plugins", "github.com/containernetworking/plugins")
    for plugin in ("bridge", "host-local", "loopback", "portmap"):
        out = subprocess.run([str(b / plugin)], capture_output=True, text=True, env={}).stderr
        assert out.splitlines()[0] == f"CNI {plugin} plugin {cni}", out
    flannel_cni = _required("flannel-cni", "github.com/containernetworking/plugins")
    out = subprocess.run([str(b / "flannel")], capture_output=True, text=True, env={}).stderr
    assert out.splitlines()[0] == f"CNI flannel plugin {flannel_cni}"


def test_pause_matches_kubeadm() -> None:
    """The pause binary carries the tag kubeadm asks for (registry.k8s.io/pause:<tag>)."""
    b = _built("amd64")
    names = _run([str(b / "kubeadm"), "config", "images", "list", "--kubernetes-version", "v1.37.2"]).split()
    pause_tag = next(n for n in names if "/pause:" in n).rsplit(":", 1)[1]
    assert _run([str(b / "pause"), "-v"]).strip().startswith(f"pause.c v{pause_tag}-")


def _elf_machine(path: Path) -> int:
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF", path
    return int.from_bytes(head[18:20], "little")


@pytest.mark.e2e  # the arm64 build is made by `make k8s` / `make e2e`, not by `make test`
def test_arm64_worker_binaries() -> None:
    """arm64 has what a worker runs, built for aarch64 (and they run under qemu-user where present)."""
    b = _built("arm64")
    worker = ("kubelet", "kubeadm", "kube-proxy", "containerd", "containerd-shim-runc-v2", "ctr", "crictl")
    for name in (*worker, "bridge", "host-local", "loopback", "portmap", "flanneld", "flannel", "pause"):
        assert _elf_machine(b / name) == 183, name  # EM_AARCH64
    assert not (b / "kube-apiserver").exists()
    qemu = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    if qemu:
        k8s = _required("kubernetes", "k8s.io/kubernetes")
        assert _run([qemu, str(b / "kubeadm"), "version", "-o", "short"]).strip() == k8s


# --- images in the real containerd ------------------------------------------------------------------


class Containerd:
    """The built containerd as root in a private root/state/socket; Debian's runc runs the containers."""

    def __init__(self, bindir: Path, tmp: Path) -> None:
        self.bindir = bindir
        self.sock = tmp / "containerd.sock"
        config = tmp / "config.toml"
        config.write_text(
            "version = 3\n"
            f'root = "{tmp / "root"}"\n'
            f'state = "{tmp / "state"}"\n'
            f'[grpc]\n  address = "{self.sock}"\n'
            f'[ttrpc]\n  address = "{self.sock}.ttrpc"\n'
        )
        env = dict(os.environ, PATH=f"{bindir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin')}")
        self.log = (tmp / "containerd.log").open("w")
        self.proc = subprocess.Popen(
            [str(bindir / "containerd"), "--config", str(config)], stdout=self.log, stderr=self.log, env=env
        )
        deadline = time.monotonic() + 30
        while not self.sock.exists():
            assert self.proc.poll() is None, (tmp / "containerd.log").read_text()
            assert time.monotonic() < deadline, "containerd did not start"
            time.sleep(0.2)

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bindir / "ctr"), "--address", str(self.sock), "-n", "k8s.io", *args]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        if check:
            assert res.returncode == 0, f"ctr {' '.join(args)}: {res.stderr}"
        return res

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    bindir = _built("amd64")
    if os.geteuid() != 0:
        pytest.skip("running containerd needs root")
    assert shutil.which("runc"), "runc is not installed (apt-get install runc)"
    tmp = Path(tmp_path_factory.mktemp("containerd"))
    c = Containerd(bindir, tmp)
    try:
        yield c
    finally:
        for task in c.ctr("task", "ls", "-q", check=False).stdout.split():
            c.ctr("task", "kill", "-s", "SIGKILL", task, check=False)
        time.sleep(0.5)
        for cid in c.ctr("containers", "ls", "-q", check=False).stdout.split():
            c.ctr("task", "delete", "-f", cid, check=False)
            c.ctr("containers", "rm", cid, check=False)
        c.stop()
        subprocess.run(["umount", "-R", str(tmp / "root")], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def imported(containerd: Containerd) -> dict[str, Path]:
    """Every kubeadm and flannel image archive for amd64, imported."""
    archives = images.build_images("amd64", log=False)
    for path in archives.values():
        containerd.ctr("images", "import", str(path))
    return archives


def test_kubeadm_images_all_imported(containerd: Containerd, imported: dict[str, Path]) -> None:
    """What kubeadm lists (asked here, not through images.py) is what the archives hold, by name."""
    kubeadm = _built("amd64") / "kubeadm"
    k8s = _required("kubernetes", "k8s.io/kubernetes")
    wanted = _run([str(kubeadm), "config", "images", "list", "--kubernetes-version", k8s]).split()
    assert len(wanted) == 7
    listed = set(containerd.ctr("images", "ls", "-q").stdout.split())
    assert set(wanted) <= listed
    assert set(wanted) <= set(imported)
    flannel = _required("flannel", "github.com/flannel-io/flannel")
    assert f"ghcr.io/flannel-io/flannel:{flannel}" in listed


def test_pause_runs(containerd: Containerd, imported: dict[str, Path]) -> None:
    """`ctr run` of the pause image starts /pause as 65535 and it stays up until signalled."""
    name = next(n for n in imported if "/pause:" in n)
    containerd.ctr("run", "-d", name, "bake-pause")
    time.sleep(1)
    tasks = containerd.ctr("task", "ls").stdout
    assert re.search(r"^bake-pause\s+\d+\s+RUNNING", tasks, re.M), tasks
    pid = re.search(r"^bake-pause\s+(\d+)", tasks, re.M)
    assert pid
    status = Path(f"/proc/{pid.group(1)}/status").read_text()
    assert re.search(r"^Uid:\s+65535\s", status, re.M), status
    assert Path(f"/proc/{pid.group(1)}/exe").resolve().name == "pause"
    containerd.ctr("task", "kill", "-s", "SIGTERM", "bake-pause")
    containerd.ctr("task", "delete", "bake-pause", check=False)
    containerd.ctr("containers", "rm", "bake-pause")


def _ctr_run(
    containerd: Containerd,
    image: str,
    cid: str,
    *argv: str,
    mounts: Sequence[tuple[Path, str]] = (),
    host_net: bool = False,
) -> tuple[int, str]:
    """Exit status and output of ``argv`` in a fresh container of ``image``; ``mounts``: read-only binds;
    ``host_net``: in the host's network namespace, as the static pods run (hostNetwork)."""
    opts = [f"--mount=type=bind,src={src},dst={dst},options=rbind:ro" for src, dst in mounts]
    opts += ["--net-host"] if host_net else []
    res = containerd.ctr("run", "--rm", *opts, image, cid, *argv, check=False)
    # ctr's own log lines (time="..." level=...) share stderr with the container's
    own = [line for line in res.stderr.splitlines(keepends=True) if not line.startswith('time="')]
    return res.returncode, res.stdout + "".join(own)


def _run_in(containerd: Containerd, image: str, cid: str, *argv: str) -> str:
    rc, out = _ctr_run(containerd, image, cid, *argv)
    assert rc == 0, f"{' '.join(argv)} in {image}: exit {rc}: {out}"
    return out


def test_kube_proxy_image_has_iptables(containerd: Containerd, imported: dict[str, Path]) -> None:
    """kube-proxy's image runs its binary at upstream's path and finds iptables (nft) and nft."""
    name = next(n for n in imported if "/kube-proxy:" in n)
    k8s = _required("kubernetes", "k8s.io/kubernetes")
    assert _run_in(containerd, name, "bake-kp1", "/usr/local/bin/kube-proxy", "--version").strip() == (
        f"Kubernetes {k8s}"
    )
    assert "(nf_tables)" in _run_in(containerd, name, "bake-kp2", "iptables", "--version")
    restore = _run_in(containerd, name, "bake-kp3", "iptables-restore", "--version")
    assert restore.startswith("iptables-restore v"), restore
    assert _run_in(containerd, name, "bake-kp4", "nft", "--version").startswith("nftables v")
    assert _run_in(containerd, name, "bake-kp5", "/go-runner", "--help") != ""


def test_etcd_image(containerd: Containerd, imported: dict[str, Path]) -> None:
    name = next(n for n in imported if "/etcd:" in n)
    etcd = _required("etcd", "go.etcd.io/etcd/server/v3").lstrip("v")
    assert f"etcd Version: {etcd}" in _run_in(containerd, name, "bake-etcd", "etcd", "--version")
    assert name.endswith(f":{etcd}-0")


def test_coredns_binds_53_as_nonroot(containerd: Containerd, imported: dict[str, Path]) -> None:
    """CoreDNS runs as nonroot and still binds :53, through the file capability upstream sets."""
    name = next(n for n in imported if "/coredns" in n)
    containerd.ctr("run", "-d", name, "bake-coredns")  # no Corefile: the default whoami server on :53
    time.sleep(3)
    tasks = containerd.ctr("task", "ls").stdout
    running = re.search(r"^bake-coredns\s+(\d+)\s+RUNNING", tasks, re.M)
    status = Path(f"/proc/{running.group(1)}/status").read_text() if running else ""
    containerd.ctr("task", "kill", "-s", "SIGKILL", "bake-coredns", check=False)
    time.sleep(0.5)
    containerd.ctr("task", "delete", "-f", "bake-coredns", check=False)
    containerd.ctr("containers", "rm", "bake-coredns", check=False)
    assert running, tasks
    assert re.search(r"^Uid:\s+65532\s", status, re.M), status


def test_other_image_repository(containerd: Containerd, imported: dict[str, Path]) -> None:
    """Every name kubeadm prints for another imageRepository maps to a built image, and an archive
    written under such a name imports under exactly that name."""
    kubeadm = _built("amd64") / "kubeadm"
    k8s = _required("kubernetes", "k8s.io/kubernetes")
    repo = "mirror.internal:5000/k8s"
    wanted = _run(
        [str(kubeadm), "config", "images", "list", "--kubernetes-version", k8s, "--image-repository", repo]
    )
    names = wanted.split()
    assert all(n.startswith(f"{repo}/") for n in names), names
    assert images.kubeadm_image_names(repo) == names
    kinds = {images.kind_of(n) for n in names}
    assert kinds == {
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
        "etcd",
        "coredns",
        "pause",
    }
    pause = next(n for n in names if images.kind_of(n) == "pause")
    path = images.write_archive("amd64", "pause", pause, log=False)
    containerd.ctr("images", "import", str(path))
    assert pause in containerd.ctr("images", "ls", "-q").stdout.split()


def test_load_balancer_images(containerd: Containerd, tmp_path: Path) -> None:
    """haproxy's and keepalived's images (Debian's binaries, named with a debian12- tag) start the real
    binaries on the configs the bake writes for ha-external-etcd, and carry what the health check calls."""
    from builder.node import static_pods
    from builder.plan import build_plan
    from builder.validation.profile import load_profile

    plan = build_plan(load_profile("ha-external-etcd"))
    names = images.lb_image_names("amd64", log=False)
    assert all(":debian12-" in n for n in names.values()), names
    archives = images.build_images("amd64", lb=True, log=False)
    for name in names.values():
        containerd.ctr("images", "import", str(archives[name]))
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(static_pods.load_balancer.haproxy_cfg(plan))
    conf = tmp_path / "keepalived.conf"
    conf.write_text(static_pods.load_balancer.keepalived_conf(plan, plan.control_planes[0]))
    script = tmp_path / "check_apiserver.sh"
    script.write_text(static_pods.load_balancer.check_apiserver_sh(plan))
    script.chmod(0o755)

    hcfg = (cfg, "/usr/local/etc/haproxy/haproxy.cfg")
    kconf = (conf, "/usr/local/etc/keepalived/keepalived.conf")
    check = (script, static_pods.load_balancer.CHECK_SCRIPT_PATH)
    rc, out = _ctr_run(containerd, names["haproxy"], "bake-haproxy", "/usr/sbin/haproxy", "-c", "-f", hcfg[1],
                       mounts=[hcfg])  # fmt: skip
    assert rc == 0 and "Configuration file is valid" in out, out
    rc, out = _ctr_run(containerd, names["keepalived"], "bake-keepalived", "/usr/sbin/keepalived",
                       "--config-test", "-f", kconf[1], mounts=[kconf, check], host_net=True)  # fmt: skip
    assert rc == 0, out
    tools = _run_in(
        containerd,
        names["keepalived"],
        "bake-ka-tools",
        "sh",
        "-c",
        "for t in curl ip grep; do command -v $t; done",
    )
    assert len(tools.split()) == 3, tools
    # the health check runs, and fails as it should with no apiserver behind it
    rc, out = _ctr_run(containerd, names["keepalived"], "bake-ka-check", check[1], mounts=[check])
    assert rc == 1 and "*** Error GET https://127.0.0.1:" in out, out
