"""The host's side of a PXE-style provisioning network on the guests' private switch.

A real site that boots nodes over the network has a DHCP server handing each machine its reserved
address and a seed server (`bake serve`) on the same segment. Here both live in a network namespace
created for the test, with no route anywhere: a bridge holding the server's address, Debian's dnsmasq
as the DHCP server (DNS off) with one reservation per node from the bake's manifest, and, while the
guests run, a tap on the bridge plugged into the harness's vde switch (`vde_plug2tap`). Nothing in the
namespace can reach another address, and the host's own network never sees the guests.

    with ProvisioningNetwork(workdir, "10.77.0.1/24", leases) as net:
        net.start(["python", "-m", "builder.cli", "serve", ...])   # runs in the namespace
        run_vms(specs, ..., on_switch=net.plug)
        net.run(["chromium", ...])                               # the page, from the namespace
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .harness import kill_group

BRIDGE = "bakeprov0"
TAP = "bakeprov1"
TOOLS = ("ip", "dnsmasq", "vde_plug2tap")


class ProvisioningError(RuntimeError):
    """The namespace, its DHCP server or the tap could not be set up (the message says which)."""


@dataclass(frozen=True)
class Lease:
    """A DHCP reservation: the node's MAC gets its profile address, name, gateway and DNS server."""

    mac: str
    ip: str
    name: str


def missing_tools() -> str | None:
    """Why this machine cannot build the network (None: it can)."""
    if os.geteuid() != 0:
        return "network namespaces and taps need root"
    gone = [t for t in TOOLS if shutil.which(t) is None]
    if gone:
        return f"{', '.join(gone)} not installed (apt-get install iproute2 dnsmasq-base vde2)"
    return None


def _run(argv: Sequence[str], what: str) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise ProvisioningError(f"{what}: {' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


class ProvisioningNetwork:
    """A namespace with the server's address on a bridge and dnsmasq serving `leases`; `start` runs more
    servers in it, `plug` joins it to a vde switch for as long as the guests run."""

    def __init__(
        self, workdir: Path, address: str, leases: Sequence[Lease], *, gateway: str, dns: Sequence[str]
    ) -> None:
        self.workdir = workdir
        self.interface = ipaddress.ip_interface(address)
        self.leases = list(leases)
        self.gateway = gateway
        self.dns = list(dns)
        self.name = f"bakeprov-{os.getpid()}-{time.monotonic_ns() % 100000}"
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    @property
    def address(self) -> str:
        return str(self.interface.ip)

    def prefix(self) -> list[str]:
        """Run a command inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def __enter__(self) -> ProvisioningNetwork:
        self.workdir.mkdir(parents=True, exist_ok=True)
        _run(["ip", "netns", "add", self.name], "create the namespace")
        try:
            ns = self.prefix()
            _run([*ns, "ip", "link", "set", "lo", "up"], "loopback up")
            _run([*ns, "ip", "link", "add", BRIDGE, "type", "bridge"], "create the bridge")
            _run([*ns, "ip", "address", "add", str(self.interface), "dev", BRIDGE], "address the bridge")
            _run([*ns, "ip", "link", "set", BRIDGE, "up"], "bridge up")
            self.start(self._dnsmasq(), "dnsmasq")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _dnsmasq(self) -> list[str]:
        net = self.interface.network
        hosts = [f"--dhcp-host={lease.mac},{lease.ip},{lease.name},infinite" for lease in self.leases]
        return [
            "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--no-resolv", "--no-hosts",
            f"--interface={BRIDGE}", "--bind-dynamic", "--dhcp-authoritative",
            f"--dhcp-range={net.network_address},static,{net.netmask},infinite",
            f"--dhcp-option=option:router,{self.gateway}",
            f"--dhcp-option=option:dns-server,{','.join(self.dns)}",
            f"--dhcp-leasefile={self.workdir / 'dnsmasq.leases'}",
            f"--pid-file={self.workdir / 'dnsmasq.pid'}",
            "--log-dhcp", *hosts,
        ]  # fmt: skip

    def start(self, argv: Sequence[str], name: str, *, env: dict[str, str] | None = None) -> Path:
        """A long-running server in the namespace, its output in `<name>.log`; stopped on exit."""
        log = self.workdir / f"{name}.log"
        proc = subprocess.Popen(
            [*self.prefix(), *argv],
            stdin=subprocess.DEVNULL,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        time.sleep(0.5)
        if proc.poll() is not None:
            raise ProvisioningError(f"{name} exited {proc.returncode} at once: {log.read_text()[-2000:]}")
        self._procs.append((name, proc))
        return log

    def run(self, argv: Sequence[str], *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix(), *argv], capture_output=True, text=True, timeout=timeout, check=False
        )

    @contextmanager
    def plug(self, switch: Path) -> Iterator[None]:
        """The tap on the bridge, plugged into the guests' switch (harness `run_vms(on_switch=...)`)."""
        log = self.workdir / "vde_plug2tap.log"
        proc = subprocess.Popen(
            [*self.prefix(), "vde_plug2tap", "-s", str(switch), TAP],
            stdin=subprocess.DEVNULL,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 30
            while self.run(["ip", "link", "show", TAP]).returncode != 0:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise ProvisioningError(f"vde_plug2tap made no {TAP}: {log.read_text()[-2000:]}")
                time.sleep(0.2)
            _run([*self.prefix(), "ip", "link", "set", TAP, "master", BRIDGE], "tap on the bridge")
            _run([*self.prefix(), "ip", "link", "set", TAP, "up"], "tap up")
            yield
        finally:
            kill_group(proc)

    def __exit__(self, *exc: object) -> None:
        for _, proc in reversed(self._procs):
            kill_group(proc)
        self._procs.clear()
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, timeout=60, check=False)
