"""Boot bake nodes in QEMU from their NoCloud seeds and read what the guest agent reports.

    from tests.vm.harness import VmSpec, run_vms, qemu_available
    from tests.vm import expect
    results = run_vms(
        [VmSpec("cp1", "amd64", Path("outputs/c/nodes/cp1/seed.iso"), "52:54:00:00:00:11",
                expectations=expect.expectations(expect.hostname("cp1")))],
        workdir=tmp_path, timeout_s=300)
    assert all(r.ok for r in results), "\\n".join(r.explain() for r in results)

All VMs of one call boot at once on ONE private vde_switch (no host networking at all). Each gets a qcow2
overlay on the cached image (tests/vm/image.py), the seed ISO as its second virtio disk (none for a node
that fetches its seed over the network: `seed_iso=None`, the kernel arguments say where) and, when it
has expectations, a `baketest` ISO (check.py + expectations.json) as the next. `run_vms(on_switch=...)`
puts the host's side of a provisioning network on the switch (tests/vm/provisioning.py). The guest
agent prints one `BAKE-TEST-RESULT <json>` line per boot on the serial console and powers the VM off;
this module waits for QEMU to exit (bounded), parses the serial log and always kills what it started.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .image import FLAVOURS, GuestImage, ImageBuildError, cached_image, ensure_image, host_arch

PREFIX = "BAKE-TEST-RESULT"
GUEST_DIR = Path(__file__).resolve().parent / "guest"
QEMU = {"amd64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64"}
CONSOLE = {"amd64": "ttyS0", "arm64": "ttyAMA0"}
MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
RESULT_RE = re.compile(PREFIX + r" (\{.*\})\s*$")


@dataclass
class VmSpec:
    """One guest to boot. `reboots` extra boots prove state survives a reboot (one result per boot)."""

    name: str
    arch: str
    seed_iso: Path | None  # None: no seed disk; the node fetches its seed (nocloud-net, `extra_kernel_args`)
    mac: str
    memory_mb: int = 1024
    cpus: int = 1
    expectations: dict[str, Any] | None = None
    reboots: int = 0
    extra_kernel_args: Sequence[str] = ()
    # The bootstrap's declared test stop, installed by the harness (no image ships it): () stops before
    # the waits and kubeadm; lines such as ("after-waits", "wait-seconds=30") move or bound it; None means
    # no stop at all (the real kubeadm runs: image "k8s").
    test_stop: Sequence[str] | None = ()
    # Boots on which bake-bootstrap.service is expected to FAIL (e.g. a worker giving up on its endpoint).
    bootstrap_fails_on: Sequence[int] = ()
    # Image flavour (tests/vm/image.py): "standin" (Debian packages + kubelet TEST DOUBLES) or "k8s".
    image: str = "standin"
    # (host port, guest port): a second NIC on QEMU user networking with `restrict=on` (no traffic out of
    # the guest) forwarding 127.0.0.1:<host port> to the guest's port; the guest agent gives it an address.
    host_forwards: Sequence[tuple[int, int]] = ()
    # More read-only raw disks (ISOs), e.g. container image archives.
    extra_disks: Sequence[Path] = ()
    # Files beside check.py on the baketest ISO (mounted at /run/bake-test/iso while the checks run).
    check_files: dict[str, bytes] = field(default_factory=dict)
    # Power the VM off (QEMU killed: no shutdown in the guest) the moment it has reported, while its peers
    # keep running: a failover test. Counts as a clean stop, like a VM held and stopped after its report.
    stop_after_report: bool = False
    # Power on this many seconds after the run starts (peers first): e.g. an etcd member that comes up
    # after the control plane that needs it.
    start_delay_s: float = 0

    @property
    def hostnic_mac(self) -> str:
        """The forwarding NIC's MAC: the spec's, in another locally administered prefix."""
        return "52:54:01:" + self.mac.lower()[9:]


@dataclass
class VmResult:
    """What one guest reported; `ok` only if every expected boot reported ok and QEMU exited cleanly."""

    name: str
    ok: bool
    results: list[dict[str, Any]]
    serial_log: Path
    qemu_returncode: int | None
    timed_out: bool = False
    elapsed_s: float = 0.0
    expected_boots: int = 1
    report_times_s: list[float] = field(default_factory=list)  # seconds from QEMU start to each boot's report
    problems: list[str] = field(default_factory=list)

    def failing_checks(self) -> list[tuple[int, dict[str, Any]]]:
        return [(r.get("boot", 0), c) for r in self.results for c in r.get("checks", []) if not c.get("ok")]

    def explain(self) -> str:
        """A human summary of why this VM failed (or that it passed), pointing at the serial log."""
        state = "ok" if self.ok else "FAILED"
        lines = [f"[vm] {self.name}: {state} after {self.elapsed_s:.0f} s; serial log: {self.serial_log}"]
        lines += [f"  - {p}" for p in self.problems]
        for r in self.results:
            ci = r.get("cloud_init", {})
            bs = r.get("bootstrap", {})
            lines.append(
                f"  boot {r.get('boot')}: ok={r.get('ok')} cloud-init {ci.get('status')} "
                f"(rc {ci.get('status_rc')}, "
                f"errors {ci.get('result', {}).get('v1', {}).get('errors')}); bootstrap "
                + (
                    f"{bs.get('ActiveState')}/{bs.get('Result')} stopped={bs.get('stopped') is not None} "
                    f"done={bs.get('done')}"
                    if bs.get("present")
                    else "absent"
                )
            )
            if "agent_error" in r:
                lines.append(f"    agent error: {r['agent_error']}")
            for c in r.get("checks", []):
                if not c.get("ok"):
                    lines.append(f"    FAIL {c.get('name')}: {c.get('detail')}")
            for key, value in (r.get("logs") or {}).items():
                if value:
                    lines.append(f"    {key}:")
                    lines += [f"      {v}" for v in (value if isinstance(value, list) else [value])]
        return "\n".join(lines)


class HarnessError(RuntimeError):
    """The harness itself could not run (bad spec, missing tool); not a guest failure."""


# ---------------------------------------------------------------------------------------------------------
# availability and acceleration


def qemu_available(arch: str, flavour: str = "standin") -> str | None:
    """None if VMs of `arch` can be booted here, else the reason (for pytest.skip)."""
    if arch not in QEMU:
        return f"unknown arch {arch!r}"
    for tool in (QEMU[arch], "qemu-img", "vde_switch"):
        if shutil.which(tool) is None:
            return (
                f"{tool} is not installed (apt-get install qemu-system-x86 qemu-system-arm qemu-utils vde2)"
            )
    try:
        netdevs = subprocess.run(
            [QEMU[arch], "-machine", "none", "-netdev", "help"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{QEMU[arch]} does not run: {e}"
    if "vde" not in netdevs.split():
        return f"{QEMU[arch]} was built without vde networking"
    try:
        cached = cached_image(arch, flavour)
    except ImageBuildError as e:  # the k8s flavour's binaries are not built
        return str(e)
    if cached is None:
        if os.geteuid() != 0:
            return f"no cached {arch} image and building one needs root"
        if shutil.which("mmdebstrap") is None:
            return "no cached image and mmdebstrap is not installed"
        if arch != host_arch() and shutil.which("update-binfmts") is None:
            return f"no cached {arch} image and no binfmt support (apt-get install qemu-user-static)"
    return None


_KVM_PROBE: dict[str, bool] = {}


def _kvm_boots(image: GuestImage, workdir: Path) -> bool:
    """KVM is used only if a kernel actually runs under it (nested/PVM KVM here aborts or crawls)."""
    if image.arch in _KVM_PROBE:
        return _KVM_PROBE[image.arch]
    ok = False
    if image.arch == host_arch() and os.access("/dev/kvm", os.R_OK | os.W_OK):
        log = workdir / "kvm-probe.log"
        argv = [
            QEMU[image.arch], "-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults", "-no-user-config",
            "-display", "none", "-no-reboot", "-serial", f"file:{log}", "-kernel", str(image.kernel),
            "-append", f"console={CONSOLE[image.arch]} panic=-1 root=/dev/bake-kvm-probe",
        ]  # fmt: skip
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(argv, capture_output=True, timeout=30, check=False, start_new_session=True)
        text = log.read_text(errors="replace") if log.exists() else ""
        ok = "Kernel panic" in text or "Unable to mount root" in text
        if not ok:
            print("[vm] /dev/kvm is present but a kernel does not boot under it: using TCG", file=sys.stderr)
    _KVM_PROBE[image.arch] = ok
    return ok


def _accel(image: GuestImage, workdir: Path) -> list[str]:
    want = os.environ.get("BAKE_VM_ACCEL", "auto").lower()
    if want not in ("auto", "tcg", "kvm"):
        raise HarnessError(f"BAKE_VM_ACCEL={want!r}: use tcg, kvm or auto")
    if want == "kvm" or (want == "auto" and _kvm_boots(image, workdir)):
        return ["-accel", "kvm", "-cpu", "host"]
    # qemu64 boots ~20 % faster than max under TCG here (no AVX/AVX2 for glibc to pick, all emulated);
    # cortex-a57 has no pointer authentication, which TCG emulates slowly.
    default = "qemu64" if image.arch == "amd64" else "cortex-a57"
    cpu = os.environ.get(f"BAKE_VM_CPU_{image.arch.upper()}") or default
    return ["-accel", "tcg,thread=multi", "-cpu", cpu]


# ---------------------------------------------------------------------------------------------------------
# ISOs


def _iso_name(name: str, used: set[str]) -> str:
    stem, _, ext = name.upper().rpartition(".") if "." in name else (name.upper(), "", "")
    stem = re.sub(r"[^A-Z0-9_]", "_", stem)[:8] or "F"
    ext = re.sub(r"[^A-Z0-9_]", "_", ext)[:3]
    for i in range(1000):
        cand = stem if i == 0 else f"{stem[: 8 - len(str(i))]}{i}"
        iso = f"/{cand}.{ext};1"
        if iso not in used:
            used.add(iso)
            return iso
    raise HarnessError(f"cannot find an ISO name for {name}")


def make_iso(path: Path, label: str, files: dict[str, bytes]) -> Path:
    """A flat ISO9660 + Joliet + Rock Ridge image with volume label `label` (how cloud-init finds cidata)."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=label)
    used: set[str] = set()
    for name, data in sorted(files.items()):
        iso.add_fp(
            io.BytesIO(data), len(data), iso_path=_iso_name(name, used), rr_name=name, joliet_path=f"/{name}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    iso.write(str(path))
    iso.close()
    return path


def make_seed_iso(
    path: Path,
    *,
    user_data: str,
    meta_data: str,
    network_config: str | None = None,
    vendor_data: str | None = None,
) -> Path:
    """A NoCloud `cidata` seed (what the renderer produces; here for hand-made test seeds)."""
    files = {"user-data": user_data.encode(), "meta-data": meta_data.encode()}
    if network_config is not None:
        files["network-config"] = network_config.encode()
    if vendor_data is not None:
        files["vendor-data"] = vendor_data.encode()
    return make_iso(path, "cidata", files)


def make_check_iso(path: Path, expectations: dict[str, Any], extra: dict[str, bytes] | None = None) -> Path:
    """The `baketest` ISO the guest agent runs: check.py + expectations.json (+ files the checks read)."""
    if not isinstance(expectations.get("checks"), list):
        raise HarnessError("expectations must be {'checks': [...]} (see tests/vm/expect.py)")
    files = {
        **(extra or {}),
        "check.py": (GUEST_DIR / "check.py").read_bytes(),
        "expectations.json": json.dumps(expectations, indent=1, sort_keys=True).encode(),
    }
    return make_iso(path, "baketest", files)


# ---------------------------------------------------------------------------------------------------------
# processes


def kill_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM to the process group (started with start_new_session), SIGKILL after `grace`."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)


@contextmanager
def vde_switch(workdir: Path) -> Iterator[Path]:
    """A private switch for this run only; stops when its stdin closes, and is killed on the way out."""
    sock = workdir / "sw"
    link: Path | None = None
    if len(str(sock)) > 90:  # sun_path is 108 bytes and vde appends /ctl and port names
        link = Path(tempfile.mkdtemp(prefix="bakevde-"))
        sock = link / "sw"
    proc = subprocess.Popen(
        ["vde_switch", "-s", str(sock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "vde_switch.log").open("wb"),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not (sock / "ctl").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise HarnessError(f"vde_switch did not start (see {workdir / 'vde_switch.log'})")
            time.sleep(0.1)
        yield sock
    finally:
        if proc.stdin:
            proc.stdin.close()
        kill_group(proc, grace=3)
        if link is not None:
            shutil.rmtree(link, ignore_errors=True)


def kernel_cmdline(spec: VmSpec, guest_timeout: int, hold: bool = False) -> str:
    """`hold`: after its last report the guest stays up (peers may still need it) until the host stops it."""
    args = [
        "root=/dev/vda", "rw", f"console={CONSOLE[spec.arch]}", "ipv6.disable=1", "panic=-1",
        "mitigations=off",  # throwaway test guests; retpolines etc. cost TCG time for nothing
        "bake.test=1", f"bake.test.reboots={spec.reboots}", f"bake.test.timeout={guest_timeout}",
        *(["bake.test.hold=1"] if hold else []),
        *(
            [f"bake.test.stop={','.join(spec.test_stop) or 'before-waits'}"]
            if spec.test_stop is not None
            else []
        ),
        *([f"bake.test.hostnic={spec.hostnic_mac}"] if spec.host_forwards else []),
        *(
            [f"bake.test.bootstrap-fails={','.join(str(b) for b in spec.bootstrap_fails_on)}"]
            if spec.bootstrap_fails_on
            else []
        ),
        *spec.extra_kernel_args,
    ]  # fmt: skip
    return " ".join(args)


def qemu_argv(
    spec: VmSpec,
    image: GuestImage,
    vmdir: Path,
    switch: Path,
    accel: list[str],
    guest_timeout: int,
    hold: bool = False,
) -> list[str]:
    """The full QEMU command line for one guest (pure, so it can be inspected in unit tests)."""
    machine = ["-machine", "virt"] if spec.arch == "arm64" else ["-machine", "pc"]
    drives: list[str] = []
    disks = [("root", vmdir / "root.qcow2", "qcow2", False)]
    if spec.seed_iso is not None:
        disks.append(("seed", spec.seed_iso, "raw", True))
    if spec.expectations is not None:
        disks.append(("checks", vmdir / "baketest.iso", "raw", True))
    disks += [(f"extra{i}", path, "raw", True) for i, path in enumerate(spec.extra_disks)]
    for ident, path, fmt, ro in disks:
        opts = f"if=none,id={ident},file={path.resolve()},format={fmt}" + (
            ",readonly=on" if ro else ",cache=unsafe"
        )
        drives += ["-drive", opts, "-device", f"virtio-blk-pci,drive={ident}"]
    argv = [
        QEMU[spec.arch], "-name", spec.name, *machine, *accel,
        "-smp", str(spec.cpus), "-m", str(spec.memory_mb),
        "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
        "-serial", f"file:{vmdir / 'serial.log'}",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd),
        "-append", kernel_cmdline(spec, guest_timeout, hold),
        *drives,
        "-netdev", f"vde,id=n0,sock={switch}", "-device", f"virtio-net-pci,netdev=n0,mac={spec.mac}",
        "-device", "virtio-rng-pci",
    ]  # fmt: skip
    if spec.host_forwards:
        fwd = ",".join(f"hostfwd=tcp:127.0.0.1:{h}-:{g}" for h, g in spec.host_forwards)
        argv += [
            "-netdev", f"user,id=h0,restrict=on,{fwd}",
            "-device", f"virtio-net-pci,netdev=h0,mac={spec.hostnic_mac}",
        ]  # fmt: skip
    if spec.reboots == 0:
        argv.append("-no-reboot")
    return argv


def parse_serial(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Result lines from a serial log, one per boot (a repeated boot number keeps the first)."""
    results: dict[int, dict[str, Any]] = {}
    problems: list[str] = []
    for raw in text.splitlines():
        line = raw.replace("\r", "")
        idx = line.find(PREFIX + " ")
        if idx < 0:
            continue
        m = RESULT_RE.search(line[idx:])
        try:
            if m is None:
                raise ValueError("no JSON object after the prefix")
            doc = json.loads(m.group(1))
            boot = int(doc["boot"])
        except (ValueError, KeyError, TypeError) as e:
            problems.append(f"unparsable result line ({e}): {line[idx : idx + 300]}")
            continue
        results.setdefault(boot, doc)
    return [results[b] for b in sorted(results)], problems


def _validate(specs: Sequence[VmSpec]) -> None:
    names = [s.name for s in specs]
    macs = [s.mac.lower() for s in specs]
    if len(set(names)) != len(names) or len(set(macs)) != len(macs):
        raise HarnessError(f"VM names and MACs must be unique: {names} {macs}")
    for s in specs:
        if s.arch not in QEMU:
            raise HarnessError(f"{s.name}: unknown arch {s.arch!r}")
        if not MAC_RE.match(s.mac):
            raise HarnessError(f"{s.name}: bad MAC {s.mac!r}")
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", s.name):
            raise HarnessError(f"{s.name!r}: VM names become directory names; use [A-Za-z0-9_.-]")
        if s.seed_iso is not None and not s.seed_iso.is_file():
            raise HarnessError(f"{s.name}: seed ISO {s.seed_iso} does not exist")
        for disk in s.extra_disks:
            if not disk.is_file():
                raise HarnessError(f"{s.name}: disk {disk} does not exist")
        if s.image not in FLAVOURS:
            raise HarnessError(f"{s.name}: unknown image flavour {s.image!r} ({', '.join(FLAVOURS)})")
        for host, guest in s.host_forwards:
            if not (0 < host < 65536 and 0 < guest < 65536):
                raise HarnessError(f"{s.name}: bad port forward {host}->{guest}")
        for line in s.test_stop or ():
            if not re.match(r"^[A-Za-z0-9_.=-]+$", line):
                raise HarnessError(
                    f"{s.name}: test stop line {line!r} cannot travel on the kernel command line"
                )


def run_vms(
    specs: Sequence[VmSpec],
    *,
    workdir: Path,
    timeout_s: int,
    progress: bool = True,
    on_switch: Callable[[Path], AbstractContextManager[object]] | None = None,
) -> list[VmResult]:
    """Boot every spec at once on one private switch; wait (at most timeout_s) for all to power off.

    `on_switch(switch socket)` is entered once the switch runs, before any guest starts, and left after
    the last guest stopped: the host's side of the private network (e.g. a seed server and DHCP in a
    network namespace of their own).

    With several VMs each guest stays up after its last report until every other guest has reported (or
    died), so checks against peers (ping, an etcd cluster) never find a peer already powered off; the
    harness then stops the held VMs itself (SIGTERM: QEMU exits cleanly).
    """
    _validate(specs)
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    images = {key: ensure_image(*key) for key in sorted({(s.arch, s.image) for s in specs})}
    guest_timeout = max(60, timeout_s // (1 + max(s.reboots for s in specs)) - 20) if specs else 60

    def note(msg: str) -> None:
        if progress:
            print(f"[vm] {msg}", file=sys.stderr, flush=True)

    procs: dict[str, subprocess.Popen[bytes]] = {}
    started: dict[str, float] = {}
    ended: dict[str, float] = {}
    timed_out: set[str] = set()
    released: set[str] = set()
    reported: set[str] = set()
    reported_at: dict[str, float] = {}
    boot_seen: dict[str, dict[int, float]] = {s.name: {} for s in specs}
    hold = len(specs) > 1
    want = {s.name: s.reboots + 1 for s in specs}
    by_name = {s.name: s for s in specs}
    try:
        with vde_switch(workdir) as switch, contextlib.ExitStack() as host_side:
            if on_switch is not None:
                host_side.enter_context(on_switch(switch))

            def power_on(spec: VmSpec) -> None:
                vmdir = workdir / spec.name
                shutil.rmtree(vmdir, ignore_errors=True)
                vmdir.mkdir(parents=True)
                image = images[(spec.arch, spec.image)]
                subprocess.run(
                    ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.rootfs), "-F", "raw",
                     str(vmdir / "root.qcow2")],
                    check=True, capture_output=True, timeout=60,
                )  # fmt: skip
                if spec.expectations is not None:
                    make_check_iso(vmdir / "baketest.iso", spec.expectations, spec.check_files)
                argv = qemu_argv(spec, image, vmdir, switch, _accel(image, workdir), guest_timeout, hold)
                (vmdir / "qemu.argv").write_text(" ".join(argv) + "\n")
                procs[spec.name] = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=(vmdir / "qemu.log").open("wb"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                started[spec.name] = time.monotonic()
                accel = argv[argv.index("-accel") + 1]
                note(f"{spec.name} ({spec.arch}, {accel}) booting; serial log {vmdir / 'serial.log'}")

            run_start = time.monotonic()
            waiting = sorted((s for s in specs if s.start_delay_s > 0), key=lambda s: s.start_delay_s)
            for spec in specs:
                if spec.start_delay_s <= 0:
                    power_on(spec)
            deadline = time.monotonic() + timeout_s
            next_scan = 0.0
            while len(ended) < len(specs):
                while waiting and time.monotonic() - run_start >= waiting[0].start_delay_s:
                    power_on(waiting.pop(0))
                for name, proc in procs.items():
                    if name not in ended and proc.poll() is not None:
                        ended[name] = time.monotonic()
                        took = ended[name] - started[name]
                        note(f"{name} powered off after {took:.0f} s (qemu exit {proc.returncode})")
                if time.monotonic() >= next_scan:
                    next_scan = time.monotonic() + 1
                    for name in procs:
                        if name in reported:
                            continue
                        log = workdir / name / "serial.log"
                        text = log.read_text(errors="replace") if log.exists() else ""
                        for r in parse_serial(text)[0]:
                            if r["boot"] not in boot_seen[name]:
                                took = round(time.monotonic() - started[name], 1)
                                boot_seen[name][r["boot"]] = took
                                note(f"{name} boot {r['boot']} reported ok={r.get('ok')} after {took:.0f} s")
                        if len(boot_seen[name]) >= want[name]:
                            reported.add(name)
                            reported_at[name] = time.monotonic()
                            if by_name[name].stop_after_report and name not in ended:
                                kill_group(procs[name])
                                released.add(name)
                                ended[name] = time.monotonic()
                                note(f"{name} powered off by the harness after its report (failover test)")
                if hold and all(n in ended or n in reported for n in by_name):
                    for name, proc in procs.items():
                        if name not in ended:
                            kill_group(proc, grace=15)
                            released.add(name)
                            ended[name] = time.monotonic()
                    note(f"all guests reported; stopped held VMs {sorted(released)}")
                if time.monotonic() > deadline:
                    for name, proc in procs.items():
                        if name not in ended:
                            timed_out.add(name)
                            kill_group(proc)
                            ended[name] = time.monotonic()
                            note(f"{name} TIMED OUT after {timeout_s} s: killed")
                    for spec in waiting:
                        timed_out.add(spec.name)
                        note(f"{spec.name} never powered on: the run timed out first")
                    break
                time.sleep(0.5)
    finally:
        for proc in procs.values():
            kill_group(proc)

    out: list[VmResult] = []
    now = time.monotonic()
    for spec in specs:
        vmdir = workdir / spec.name
        log = vmdir / "serial.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        results, problems = parse_serial(text)
        rc = procs[spec.name].returncode if spec.name in procs else None
        if spec.name in released:
            rc = 0  # stopped by the harness after its last report: not a guest failure
        if spec.name in timed_out:
            problems.append(f"timed out after {timeout_s} s (killed)")
        elif rc != 0:
            qlog = (
                (vmdir / "qemu.log").read_text(errors="replace")[-1500:]
                if (vmdir / "qemu.log").exists()
                else ""
            )
            problems.append(f"qemu exited {rc}: {qlog.strip()}")
        if len(results) != want[spec.name]:
            problems.append(f"{len(results)} result line(s) for {want[spec.name]} boot(s)")
        ok = not problems and all(r.get("ok") is True for r in results)
        res = VmResult(
            name=spec.name,
            ok=ok,
            results=results,
            serial_log=log,
            qemu_returncode=rc,
            timed_out=spec.name in timed_out,
            elapsed_s=reported_at.get(spec.name, ended.get(spec.name, now)) - started.get(spec.name, now),
            expected_boots=want[spec.name],
            report_times_s=[boot_seen[spec.name][b] for b in sorted(boot_seen[spec.name])],
            problems=problems,
        )
        (vmdir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        if not ok and progress:
            print(res.explain(), file=sys.stderr, flush=True)
        out.append(res)
    return out
