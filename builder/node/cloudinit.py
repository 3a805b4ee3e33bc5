"""One node's NoCloud seed: user-data, meta-data and network-config, built as data and dumped with yamlio.

user-data only writes files (the shared first-boot program as one archive that runcmd unpacks first,
builder.node.archive) and starts bake-bootstrap.service with --no-block: cloud-init never waits
on kubeadm, and the node's real work happens in the bootstrap unit, which runs again at every boot
until it is done. Only keys valid in both cloud-init 22.4 (Debian 12) and 24.x/25.x (Ubuntu 24.04)
are used: hostname, fqdn, preserve_hostname, manage_etc_hosts, users, ssh_pwauth, write_files, runcmd.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import yamlio
from ..errors import BakeError, Problem
from ..files import NodeFile
from ..model import User
from ..plan import ClusterPlan, NodePlan
from ..serve import nodefiles as report_files
from . import archive, bootstrap, compact_keys, host, kubeadm_config, renewal, static_pods

SUDO_RULE = "ALL=(ALL) NOPASSWD:ALL"
# sha512_crypt cost, pinned so re-bakes stay byte-identical whatever libpass's default becomes.
PASSWORD_ROUNDS = 100_000
_CRYPT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class RenderedNode:
    node: NodePlan
    files: tuple[NodeFile, ...]
    user_data: bytes
    meta_data: bytes
    network_config: bytes
    instance_id: str
    """The value in meta-data; the manifest reads it from here."""


# --------------------------------------------------------------------------------------------------
# users


def password_salt(cluster: str, node: str, user: str, password: str) -> str:
    """A sha512_crypt salt derived from (cluster, node, user, password), so re-bakes are byte-identical.

    A random salt would change user-data (and the seed ISO) at every bake. The salt is visible in
    the hash, and deriving it from the password means it could serve as a shortcut to test password
    guesses; deriving it with scrypt (memory-hard, ~16 MiB and tens of ms per guess) makes that shortcut
    at least as costly as the sha512_crypt hash itself. Cluster, node and user names keep salts, hence
    hashes, distinct across nodes and users sharing one password.
    """
    context = "\0".join(("bake-passwd-salt-v1", cluster, node, user)).encode()
    raw = hashlib.scrypt(password.encode(), salt=context, n=1 << 14, r=8, p=1, dklen=16)
    return "".join(_CRYPT_ALPHABET[b % 64] for b in raw)  # 256 % 64 == 0: no bias


def hash_password(cluster: str, node: str, user: str, password: str) -> str:
    salt = password_salt(cluster, node, user, password)
    # libpass (passlib's maintained fork, same import name) needs no `crypt` module (gone in 3.13)
    from passlib.hash import sha512_crypt

    return str(sha512_crypt.using(rounds=PASSWORD_ROUNDS, salt=salt).hash(password))


def user_entry(plan: ClusterPlan, node: NodePlan, user: User) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": user.name}
    if user.groups:
        entry["groups"] = list(user.groups)
    if user.sudo:
        entry["sudo"] = SUDO_RULE
    entry["shell"] = user.shell
    if user.ssh_authorized_keys:
        entry["ssh_authorized_keys"] = list(user.ssh_authorized_keys)
    hashed = user.password_hash
    if hashed is None and user.password is not None:
        hashed = hash_password(plan.name, node.name, user.name, user.password)
    entry["lock_passwd"] = hashed is None
    if hashed is not None:
        entry["passwd"] = hashed  # a crypt(3) hash in every cloud-init version; never the clear text
    return entry


# --------------------------------------------------------------------------------------------------
# write_files


def _as_text(content: bytes) -> str | None:
    """The content as text if YAML can carry it verbatim (UTF-8, no control characters but \\t \\n)."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _NOT_VERBATIM.search(text):
        return None  # YAML would escape, fold or treat these as line breaks
    return text


_NOT_VERBATIM = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff]")


def write_file_entry(f: NodeFile) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": f.path, "owner": f.owner, "permissions": f.mode_text}
    text = _as_text(f.content)
    if text is None:
        entry["encoding"] = "b64"
        entry["content"] = base64.b64encode(f.content).decode("ascii")
    else:
        entry["content"] = text
    entry["defer"] = False
    return entry


def merge_files(groups: Sequence[Sequence[NodeFile]], node: NodePlan) -> tuple[NodeFile, ...]:
    """All files sorted by path; the same path twice is a renderer conflict unless identical."""
    by_path: dict[str, NodeFile] = {}
    for group in groups:
        for f in group:
            seen = by_path.get(f.path)
            if seen is not None and seen != f:
                raise BakeError([Problem(f"node {node.name}", f"two different files for {f.path}")])
            by_path[f.path] = f
    return tuple(by_path[p] for p in sorted(by_path))


# --------------------------------------------------------------------------------------------------
# the three documents


def user_data_doc(plan: ClusterPlan, node: NodePlan, files: Sequence[NodeFile]) -> dict[str, Any]:
    users = [user_entry(plan, node, u) for u in node.users]
    doc: dict[str, Any] = {
        "hostname": node.name,
        "fqdn": node.name,
        "preserve_hostname": False,
        "manage_etc_hosts": True,
    }
    if users:
        doc["users"] = users
    # Password logins over SSH only when the profile gave someone a password.
    doc["ssh_pwauth"] = any("passwd" in u for u in users)
    program, others = archive.split(files)
    key_pack, others = compact_keys.pack(others)
    entries = [write_file_entry(f) for f in [*others, *([key_pack] if key_pack else [])]]
    runcmd: list[list[str]] = []
    if program:
        # the shared first-boot program, unpacked before systemd reads its units (builder.node.archive)
        entries.append(archive.write_files_entry(program))
        entries.sort(key=lambda e: str(e["path"]))
        runcmd.append(list(archive.EXTRACT_COMMAND))
    doc["write_files"] = entries
    unit = bootstrap.UNIT_NAME
    doc["runcmd"] = [
        *runcmd,
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", unit],
        ["systemctl", "start", "--no-block", unit],
    ]
    if any(f.path == renewal.TIMER_PATH for f in files):
        # its service does nothing before the bootstrap is done (ConditionPathExists=)
        doc["runcmd"].append(["systemctl", "enable", "--now", renewal.TIMER_NAME])
    return doc


def network_config_doc(node: NodePlan) -> dict[str, Any]:
    eth: dict[str, Any] = {}
    if node.mac is not None:
        eth["match"] = {"macaddress": node.mac}
        eth["set-name"] = node.interface
    else:
        eth["match"] = {"name": node.interface}
    eth["dhcp4"] = False
    eth["dhcp6"] = False
    eth["addresses"] = [f"{node.ip}/{node.prefix_length}"]
    if node.gateway is not None:
        default = "::/0" if node.gateway.version == 6 else "0.0.0.0/0"
        eth["routes"] = [{"to": default, "via": str(node.gateway)}]
    if node.dns:
        eth["nameservers"] = {"addresses": [str(a) for a in node.dns]}
    return {"version": 2, "ethernets": {node.interface: eth}}


def instance_id(plan: ClusterPlan, node: NodePlan) -> str:
    """The node's cloud-init instance-id: the cluster, the node and its generation, nothing else.

    cloud-init runs its once-per-instance modules (write_files, users, SSH host keys, runcmd) again
    whenever the id differs from the one it last booted with. A re-bake that changes the seed (a
    rotated token, a re-issued leaf, another control plane in haproxy's config) must not do that to a
    running node: it would rewrite its PKI, kubelet.conf and static pods under a live cluster. So the
    id ignores the seed's content; re-provisioning a machine is an explicit act, a bump of
    nodes[].generation. Names are RFC 1123 labels (no '.'), so the '.'-joined parts cannot collide.
    """
    return f"{plan.name}.{node.name}.gen{node.generation}"


def node_files(
    plan: ClusterPlan,
    node: NodePlan,
    *,
    pki_files: Sequence[NodeFile],
    token: str,
    ca_hash: str,
    cni_source: bootstrap.CniSource = bootstrap.DEFAULT_CNI_SOURCE,
) -> tuple[NodeFile, ...]:
    """Every file the node gets, as it lands on disk: what write_files writes, the shared first-boot
    program's files (builder.node.archive) unpacked from their archive by runcmd."""
    prep = host.host_prep(plan, node)
    others = merge_files(
        [
            pki_files,
            kubeadm_config.node_config_files(plan, node, token, ca_hash),
            static_pods.node_static_pod_files(plan, node),
            prep.files,
        ],
        node,
    )
    boot = bootstrap.bootstrap_files(plan, node, prep, node_files=others, cni_source=cni_source)
    reports = report_files.report_files(plan, node)
    unpacker = compact_keys.unpacker_files() if compact_keys.packable(others) else ()
    merged = merge_files([others, boot, unpacker, renewal.renewal_files(plan, node), reports], node)
    return tuple(archive.shipped(merged))


def render_node(
    plan: ClusterPlan,
    node: NodePlan,
    *,
    pki_files: Sequence[NodeFile],
    token: str,
    ca_hash: str,
    cni_source: bootstrap.CniSource = bootstrap.DEFAULT_CNI_SOURCE,
) -> RenderedNode:
    files = node_files(plan, node, pki_files=pki_files, token=token, ca_hash=ca_hash, cni_source=cni_source)
    user_data = ("#cloud-config\n" + yamlio.dump(user_data_doc(plan, node, files))).encode()
    network_config = yamlio.dump(network_config_doc(node)).encode()
    iid = instance_id(plan, node)
    meta = {"instance-id": iid, "local-hostname": node.name}
    return RenderedNode(
        node=node,
        files=files,
        user_data=user_data,
        meta_data=yamlio.dump(meta).encode(),
        network_config=network_config,
        instance_id=iid,
    )
