"""The load balancer VIP stays in the apiserver certificate when controlPlaneEndpoint is a DNS name.

Clients that reach the VIP by address (kube-vip's own health checks, a kubeconfig written with the
address, the haproxy frontend) must be able to verify the certificate; kubeadm only adds the
endpoint's host, so the VIP is added as an IP SAN. Checked with openssl's own name matching.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .conftest import Baked
from .peers import program

ECDSA = "cluster.encryptionAlgorithm=ECDSA-P256"
CASES = {
    "kube-vip": ("ha-stacked", "10.77.0.10", ["cp-1", "cp-2", "cp-3"]),
    "haproxy-keepalived": ("ha-external-etcd", "10.77.0.10", ["cp-1", "cp-2", "cp-3"]),
    "kube-vip-ipv6": ("ha-stacked", "fd00:77::10", ["cp-1", "cp-2", "cp-3"]),
}
IPV6 = (
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


def _verify(ca: Path, crt: Path, *check: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [program("openssl"), "verify", "-purpose", "sslserver", "-CAfile", str(ca), *check, str(crt)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(CASES))
def test_vip_is_an_ip_san_with_a_dns_endpoint(baked: Baked, tmp_path: Path, case: str) -> None:
    profile, vip, control_planes = CASES[case]
    sets = [ECDSA, "cluster.controlPlaneEndpoint=api.example.test:6443"]
    if case.endswith("ipv6"):
        sets += IPV6
    plan, bundle = baked(profile, *sets)
    assert plan.endpoint is not None and plan.endpoint.host == "api.example.test"
    ca = tmp_path / "ca.crt"
    ca.write_bytes(bundle.cas["ca"].cert_pem)
    for node in control_planes:
        crt = tmp_path / f"{node}-apiserver.crt"
        crt.write_bytes(bundle.leaf(node, "apiserver").cert_pem)
        by_name = _verify(ca, crt, "-verify_hostname", "api.example.test")
        assert by_name.returncode == 0, by_name.stdout + by_name.stderr
        by_vip = _verify(ca, crt, "-verify_ip", vip)
        assert by_vip.returncode == 0, f"{node}: the VIP {vip} is not in the apiserver certificate: " + (
            by_vip.stdout + by_vip.stderr
        )
        other = _verify(ca, crt, "-verify_ip", "10.77.0.99" if ":" not in vip else "fd00:77::99")
        assert other.returncode != 0  # openssl really matches addresses


@pytest.mark.integration
def test_dns_endpoint_without_vip_has_no_extra_address(baked: Baked, tmp_path: Path) -> None:
    """The negative side: without a load balancer nothing but kubeadm's addresses is added."""
    _plan, bundle = baked("single-master", ECDSA, "cluster.controlPlaneEndpoint=api.example.test:6443")
    ca = tmp_path / "ca.crt"
    ca.write_bytes(bundle.cas["ca"].cert_pem)
    crt = tmp_path / "apiserver.crt"
    crt.write_bytes(bundle.leaf("cp-1", "apiserver").cert_pem)
    assert _verify(ca, crt, "-verify_hostname", "api.example.test").returncode == 0
    assert _verify(ca, crt, "-verify_ip", "10.77.0.11").returncode == 0  # the advertise address
    assert _verify(ca, crt, "-verify_ip", "10.77.0.10").returncode != 0
