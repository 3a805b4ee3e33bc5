"""The baked etcd PKI against real peers on loopback: openssl s_server/s_client and Debian's etcd.

Every member's server and peer certificates complete an mTLS handshake with client certificates
required and the member's own IP verified; a three-member etcd cluster built from the baked member
certificates forms, answers `etcdctl endpoint health` with the baked healthcheck-client certificate,
replicates a write, and refuses a client without a certificate. (The static pod's own command line
runs in the VM tests; here the members listen on 127.0.0.1, which every etcd certificate carries.)
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import bake, bundle

pytestmark = pytest.mark.integration
OPENSSL, ETCD, ETCDCTL = shutil.which("openssl"), shutil.which("etcd"), shutil.which("etcdctl")
MEMBERS = ("etcd-1", "etcd-2", "etcd-3")
IPS = {"etcd-1": "10.77.0.31", "etcd-2": "10.77.0.32", "etcd-3": "10.77.0.33"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("etcd")
    proc = bake("--profile", "etcd-cluster", "--set", "cluster.encryptionAlgorithm=ECDSA-P256", "-q", out=out)
    assert proc.returncode == 0, proc.stderr
    return bundle(out, "etcd-cluster").resolve()


@contextlib.contextmanager
def s_server(cert: Path, key: Path, ca: Path) -> Iterator[int]:
    assert OPENSSL
    port = free_port()
    proc = subprocess.Popen(
        [OPENSSL, "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert), "-key", str(key),
         "-CAfile", str(ca), "-Verify", "1", "-verify_return_error", "-naccept", "1", "-www"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # "verify depth is 1, must return a certificate", then "ACCEPT"
            if "ACCEPT" in line:
                break
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=10)


def s_client(port: int, ca: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert OPENSSL
    return subprocess.run(
        [
            OPENSSL,
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-CAfile",
            str(ca),
            "-verify_return_error",
            "-ign_eof",
            *args,
        ],
        input="GET / HTTP/1.0\r\n\r\n",
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
@pytest.mark.parametrize("member", MEMBERS)
@pytest.mark.parametrize("kind", ["server", "peer"])
def test_member_certificates_complete_mtls(secrets_dir: Path, member: str, kind: str) -> None:
    ca = secrets_dir / "pki/etcd/ca.crt"
    node = secrets_dir / "nodes" / member / "etcd"
    client = ("-cert", str(node / "healthcheck-client.crt"), "-key", str(node / "healthcheck-client.key"))
    if kind == "peer":  # peers authenticate each other with the peer certificate itself
        client = ("-cert", str(node / "peer.crt"), "-key", str(node / "peer.key"))
    with s_server(node / f"{kind}.crt", node / f"{kind}.key", ca) as port:
        ok = s_client(port, ca, *client, "-verify_ip", IPS[member])
    assert ok.returncode == 0 and "Verify return code: 0 (ok)" in ok.stdout, ok.stdout + ok.stderr
    assert "HTTP/1.0 200 ok" in ok.stdout, "the server must have accepted the client certificate"
    with s_server(node / f"{kind}.crt", node / f"{kind}.key", ca) as port:
        wrong_ip = s_client(port, ca, *client, "-verify_ip", "10.77.0.99")
    assert wrong_ip.returncode != 0, "hostname verification must fail for an address not in the SANs"
    with s_server(node / f"{kind}.crt", node / f"{kind}.key", ca) as port:
        no_cert = s_client(port, ca, "-verify_ip", IPS[member])
    assert "HTTP/1.0 200 ok" not in no_cert.stdout, "a client without a certificate must be refused"
    assert "certificate required" in no_cert.stderr or no_cert.returncode != 0, no_cert.stderr


@pytest.mark.skipif(
    ETCD is None or ETCDCTL is None, reason="Debian's etcd-server / etcd-client not installed"
)
def test_three_member_etcd_cluster_with_baked_certificates(secrets_dir: Path, tmp_path: Path) -> None:
    assert ETCD and ETCDCTL
    ca = secrets_dir / "pki/etcd/ca.crt"
    ports = {m: (free_port(), free_port()) for m in MEMBERS}
    initial = ",".join(f"{m}=https://127.0.0.1:{peer}" for m, (_, peer) in ports.items())
    procs = []
    try:
        for m, (client, peer) in ports.items():
            d = secrets_dir / "nodes" / m / "etcd"
            procs.append(
                subprocess.Popen(
                    [
                        ETCD,
                        f"--name={m}",
                        f"--data-dir={tmp_path / m}",
                        f"--listen-client-urls=https://127.0.0.1:{client}",
                        f"--advertise-client-urls=https://127.0.0.1:{client}",
                        f"--listen-peer-urls=https://127.0.0.1:{peer}",
                        f"--initial-advertise-peer-urls=https://127.0.0.1:{peer}",
                        f"--initial-cluster={initial}",
                        "--initial-cluster-state=new",
                        "--client-cert-auth=true",
                        f"--trusted-ca-file={ca}",
                        f"--cert-file={d / 'server.crt'}",
                        f"--key-file={d / 'server.key'}",
                        "--peer-client-cert-auth=true",
                        f"--peer-trusted-ca-file={ca}",
                        f"--peer-cert-file={d / 'peer.crt'}",
                        f"--peer-key-file={d / 'peer.key'}",
                        "--listen-metrics-urls=http://127.0.0.1:0",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=(tmp_path / f"{m}.log").open("w"),
                )
            )
        hc = secrets_dir / "nodes/etcd-1/etcd"
        endpoints = ",".join(f"https://127.0.0.1:{c}" for c, _ in ports.values())
        tls = [
            f"--cacert={ca}",
            f"--cert={hc / 'healthcheck-client.crt'}",
            f"--key={hc / 'healthcheck-client.key'}",
        ]

        def ctl(*args: str, endpoint: str = endpoints, auth: bool = True) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    ETCDCTL,
                    f"--endpoints={endpoint}",
                    "--dial-timeout=3s",
                    "--command-timeout=5s",
                    *(tls if auth else [f"--cacert={ca}"]),
                    *args,
                ],
                capture_output=True,
                text=True,
                timeout=30,
                env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
            )

        deadline = time.monotonic() + 60
        health = ctl("endpoint", "health")
        while health.returncode != 0 and time.monotonic() < deadline:
            time.sleep(1)
            health = ctl("endpoint", "health")
        logs = "".join((tmp_path / f"{m}.log").read_text()[-1500:] for m in MEMBERS)
        assert health.returncode == 0, health.stdout + health.stderr + logs
        assert (health.stdout + health.stderr).count("is healthy") == 3
        members = ctl("member", "list")
        assert all(m in members.stdout for m in MEMBERS), members.stdout
        first, second = (f"https://127.0.0.1:{ports[m][0]}" for m in ("etcd-1", "etcd-3"))
        assert ctl("put", "/bake/probe", "baked", endpoint=first).returncode == 0
        got = ctl("get", "/bake/probe", "--print-value-only", endpoint=second)
        assert got.stdout.strip() == "baked", got.stdout + got.stderr
        refused = ctl("get", "/bake/probe", endpoint=first, auth=False)
        assert refused.returncode != 0, "a client without a certificate must be refused"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
