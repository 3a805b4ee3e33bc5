"""Hand-made NoCloud seeds that follow the renderer contract, to prove the harness without the renderer."""

from __future__ import annotations

import json
from pathlib import Path

from .harness import make_seed_iso

FAKE_BOOTSTRAP = """\
#!/bin/sh
# Fake bake-bootstrap for the harness's own tests: honours the contract in tests/vm/README.md.
set -eu
mkdir -p /var/log/bake /var/lib/bake
exec >>/var/log/bake/bootstrap.log 2>&1
echo "fake bake-bootstrap run at $(date -u +%FT%TZ)"
if [ -e /etc/bake/test-stop-before-kubeadm ]; then
  echo "kubeadm init --config /etc/kubernetes/kubeadm-config.yaml" >/var/lib/bake/bootstrap.stopped
  echo "test stop before kubeadm"
  exit 0
fi
touch /var/lib/bake/bootstrap.done
"""

# WantedBy=cloud-init.target, not multi-user.target: with After=cloud-final.service the latter is an
# ordering cycle (cloud-final runs after multi-user.target).
FAKE_BOOTSTRAP_UNIT = """\
[Unit]
Description=fake bake bootstrap (harness self-test)
Wants=network-online.target
After=network-online.target cloud-final.service
ConditionPathExists=!/var/lib/bake/bootstrap.done

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/bake-bootstrap

[Install]
WantedBy=cloud-init.target
"""

# A kubeadm-shaped etcd static pod, run by kubelet-standin (TEST DOUBLE). The data volume's host path
# differs from its mount path so the stand-in's bind mount is exercised.
ETCD_MANIFEST = """\
apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  hostNetwork: true
  containers:
  - name: etcd
    image: registry.k8s.io/etcd:3.5.15-0
    command:
    - etcd
    - --name=standin
    - --data-dir=/var/lib/etcd
    - --listen-client-urls=http://127.0.0.1:2379
    - --advertise-client-urls=http://127.0.0.1:2379
    - --listen-peer-urls=http://127.0.0.1:2380
    - --initial-advertise-peer-urls=http://127.0.0.1:2380
    - --initial-cluster=standin=http://127.0.0.1:2380
    volumeMounts:
    - name: etcd-data
      mountPath: /var/lib/etcd
  volumes:
  - name: etcd-data
    hostPath:
      path: /var/lib/etcd-standin
      type: DirectoryOrCreate
"""

HELLO = "hello from a hand-made seed\n"


def _indent(text: str, n: int) -> str:
    pad = " " * n
    return "".join(pad + line if line.strip() else line for line in text.splitlines(keepends=True))


def user_data(hostname: str) -> str:
    return (
        "#cloud-config\n"
        f"hostname: {hostname}\n"
        "preserve_hostname: false\n"
        "write_files:\n"
        "  - path: /etc/bake-test/hello.txt\n"
        "    permissions: '0640'\n"
        "    owner: root:root\n"
        f"    content: {json.dumps(HELLO)}\n"
        "  - path: /usr/local/sbin/bake-bootstrap\n"
        "    permissions: '0755'\n"
        "    content: |\n"
        + _indent(FAKE_BOOTSTRAP, 6)
        + "  - path: /etc/systemd/system/bake-bootstrap.service\n"
        "    content: |\n"
        + _indent(FAKE_BOOTSTRAP_UNIT, 6)
        + "  - path: /etc/kubernetes/manifests/etcd.yaml\n"
        "    permissions: '0600'\n"
        "    content: |\n" + _indent(ETCD_MANIFEST, 6) + "runcmd:\n"
        "  - [systemctl, daemon-reload]\n"
        "  - [systemctl, enable, bake-bootstrap.service]\n"
        "  - [systemctl, start, --no-block, bake-bootstrap.service]\n"
    )


def network_config(mac: str, address: str) -> str:
    return (
        "version: 2\n"
        "ethernets:\n"
        "  nic0:\n"
        "    match:\n"
        f"      macaddress: '{mac}'\n"
        "    set-name: nic0\n"
        f"    addresses: [{address}]\n"
    )


def write_seed(path: Path, *, hostname: str, mac: str, address: str) -> Path:
    meta = f"instance-id: bake-test-{hostname}\nlocal-hostname: {hostname}\n"
    return make_seed_iso(
        path, user_data=user_data(hostname), meta_data=meta, network_config=network_config(mac, address)
    )
