"""The baked etcd static pod's command line, run by the real etcd release of every supported minor.

The bake writes a different etcd flag set per Kubernetes minor (etcd 3.5 keeps ``--experimental-*``,
3.6 and later take ``--feature-gates=InitialCorruptCheck=true``); only the etcd each minor ships can
say whether its flags are right. For every minor the table supports, the `etcd-cluster` profile is
baked at that minor and its three members run exactly their static pod's command (paths mapped through
the pod's volumes), each in its own network namespace with its baked address, using the etcd release
kubeadm's image tag names for that minor (built by `python -m tests.etcd_releases`). The members must
form one cluster, warn about no flag, and refuse a client without a certificate on both the client and
the peer URL, while the baked peer and healthcheck-client certificates are accepted. (etcd asks for a
client certificate whenever a trusted CA file is set, so `--client-cert-auth` / `--peer-client-cert-auth`
are pinned by the comparison with kubeadm's own etcd manifest in test_real_kubeadm.py, not here.)
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from builder.model import versions
from tests import etcd_releases

from . import peers
from .test_real_kubeadm import (
    OPERATOR,
    Baked,
    Processes,
    bake_profile,
    check_etcd_members,
    host_command,
    https,
    network,
    url,
    wait_etcd_healthy,
)

pytestmark = [pytest.mark.integration, pytest.mark.realk8s, pytest.mark.peer]

MINORS = sorted(versions.TABLE)
# what a flag of the wrong generation makes etcd print (3.6 warns on --experimental-*; 3.5 and 3.7 refuse)
FLAG_TROUBLE = re.compile(r"deprecated|unknown flag|flag provided but not defined|unrecognized", re.I)
# kubeadm's own etcd command keeps --snapshot-count=10000 for every minor (cmd/kubeadm/app/phases/etcd/
# local.go, v1.37.2), which etcd 3.6+ calls deprecated: the bake writes what kubeadm writes
KUBEADMS_OWN = re.compile(r"--snapshot-count is deprecated")


def etcd_for(minor: int) -> Path:
    release = etcd_releases.release_of(minor)
    path = etcd_releases.binary(release)
    if not path.exists():
        peers.missing(f"etcd {release} is not built (python -m tests.etcd_releases {release})")
    return path


@pytest.mark.parametrize("minor", MINORS, ids=[f"1.{m}" for m in MINORS])
def test_generated_etcd_command_line_runs_on_the_minors_etcd(
    minor: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    etcd = etcd_for(minor)
    release = etcd_releases.release_of(minor)
    shown = subprocess.run([str(etcd), "--version"], capture_output=True, text=True, check=True).stdout
    assert f"etcd Version: {release[1:]}\n" in shown, shown

    work = tmp_path_factory.mktemp(f"etcd-1.{minor}")
    baked: Baked = bake_profile("etcd-cluster", work, f"cluster.kubernetesVersion=1.{minor}")
    members = baked.role("etcd")
    assert len(members) == 3
    logs = work / "logs"
    logs.mkdir()
    procs = Processes(logs)
    with network(f"e{minor}") as net:
        try:
            for member in members:
                net.add_host(member.name, [(member.ip, 24)])
            operator = net.add_host(OPERATOR, [("10.77.0.1", 24)])
            pki: dict[str, Path] = {}
            for member in members:
                root = baked.copy(member, "run")
                command = host_command(root / "etc/kubernetes/manifests/etcd.yaml", root)
                assert Path(command[0]).name == "etcd"
                procs.start(member.name, net.hosts[member.name], [str(etcd), *command[1:]])
                pki[member.name] = root / "etc/kubernetes/pki/etcd"

            for member in members:
                wait_etcd_healthy(operator, member, pki[member.name], procs)

            check_etcd_members(operator, members, pki)
            for member in members:
                # peer URL, asked from another member's address (etcd also matches a peer's address
                # against its certificate): that member's baked peer certificate is let in, none is not
                other = next(m for m in members if m is not member)
                q, ns = pki[other.name], net.hosts[other.name]
                status, body = https(
                    ns, url(member.ip, 2380, "/members"), q / "ca.crt", q / "peer.crt", q / "peer.key"
                )
                assert status == 200, body
                status, body = https(ns, url(member.ip, 2380, "/members"), q / "ca.crt")
                assert status == 0 and "certificate" in body.lower(), body
            procs.check_alive()
        finally:
            procs.stop()
    for member in members:
        log = (logs / f"{member.name}.log").read_text(errors="replace")
        trouble = [
            line for line in log.splitlines() if FLAG_TROUBLE.search(line) and not KUBEADMS_OWN.search(line)
        ]
        assert not trouble, f"etcd {release} on {member.name} complained about its flags:\n" + "\n".join(
            trouble[:5]
        )
