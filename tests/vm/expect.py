"""Host-side builders for the in-guest checks (the JSON that `guest/check.py` runs on the baketest ISO).

    from tests.vm import expect
    spec.expectations = expect.expectations(
        expect.file("/etc/kubernetes/pki/ca.crt", mode=0o644, owner="root", content=ca_pem),
        expect.glob_absent("/etc/kubernetes", "*.key"),
        expect.address(mac, "10.0.0.11/24"),
    )

Every builder takes `name=` (label in the results), `wait_s=` (retry until ok for that long) and `boots=`
(only on these boot numbers, for `VmSpec.reboots`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

Check = dict[str, Any]


def _check(
    kind: str, *, name: str | None, wait_s: float | None, boots: Sequence[int] | None, **fields: Any
) -> Check:
    c: Check = {"kind": kind}
    c.update({k: v for k, v in fields.items() if v is not None})
    if name is not None:
        c["name"] = name
    if wait_s:
        c["wait_s"] = wait_s
    if boots is not None:
        c["boots"] = list(boots)
    return c


def expectations(*checks: Check) -> dict[str, Any]:
    """The document `VmSpec.expectations` takes."""
    return {"checks": list(checks)}


def file(
    path: str,
    *,
    mode: int | None = None,
    owner: str | int | None = None,
    group: str | int | None = None,
    sha256: str | None = None,
    content: bytes | str | None = None,
    contains: str | Sequence[str] | None = None,
    not_contains: str | Sequence[str] | None = None,
    type: str = "file",
    target: str | None = None,
    name: str | None = None,
    wait_s: float | None = None,
    boots: Sequence[int] | None = None,
) -> Check:
    """A path exists with this type (file/dir/symlink), mode, owner, group and content hash."""
    if content is not None:
        data = content.encode() if isinstance(content, str) else content
        sha256 = hashlib.sha256(data).hexdigest()
    return _check(
        "file",
        name=name,
        wait_s=wait_s,
        boots=boots,
        path=path,
        type=type,
        mode=None if mode is None else f"{mode:04o}",
        owner=owner,
        group=group,
        sha256=sha256,
        contains=contains if contains is None or isinstance(contains, str) else list(contains),
        not_contains=not_contains
        if not_contains is None or isinstance(not_contains, str)
        else list(not_contains),
        target=target,
    )


def absent(
    path: str, *, name: str | None = None, wait_s: float | None = None, boots: Sequence[int] | None = None
) -> Check:
    return _check("absent", name=name, wait_s=wait_s, boots=boots, path=path)


def glob_absent(
    root: str,
    pattern: str,
    *,
    name: str | None = None,
    wait_s: float | None = None,
    boots: Sequence[int] | None = None,
) -> Check:
    """Nothing under `root` whose name matches `pattern` (root-relative path if it contains '/')."""
    return _check("glob_absent", name=name, wait_s=wait_s, boots=boots, root=root, pattern=pattern)


def only_files(
    root: str,
    paths: Sequence[str],
    *,
    name: str | None = None,
    wait_s: float | None = None,
    boots: Sequence[int] | None = None,
) -> Check:
    """The files under `root` are exactly `paths` (absolute): nothing the node should not have."""
    return _check("only_files", name=name, wait_s=wait_s, boots=boots, root=root, paths=sorted(paths))


def hostname(
    equals: str, *, name: str | None = None, wait_s: float | None = None, boots: Sequence[int] | None = None
) -> Check:
    return _check("hostname", name=name, wait_s=wait_s, boots=boots, equals=equals)


def address(
    mac: str,
    address: str,
    *,
    ifname: str | None = None,
    name: str | None = None,
    wait_s: float | None = None,
    boots: Sequence[int] | None = None,
) -> Check:
    """The interface with this MAC is UP and has `address` (`10.0.0.5` or `10.0.0.5/24`)."""
    return _check("address", name=name, wait_s=wait_s, boots=boots, mac=mac, address=address, ifname=ifname)


def module(
    module: str, *, name: str | None = None, wait_s: float | None = None, boots: Sequence[int] | None = None
) -> Check:
    """Kernel module loaded (or built in)."""
    return _check("module", name=name, wait_s=wait_s, boots=boots, module=module)


def sysctl(
    key: str,
    equals: str | int,
    *,
    name: str | None = None,
    wait_s: float | None = None,
    boots: Sequence[int] | None = None,
) -> Check:
    return _check("sysctl", name=name, wait_s=wait_s, boots=boots, key=key, equals=str(equals))


def swap_off(*, name: str | None = None, boots: Sequence[int] | None = None) -> Check:
    return _check("swap_off", name=name, wait_s=None, boots=boots)


def unit(
    unit: str,
    *,
    active: bool | None = None,
    enabled: bool | None = None,
    properties: dict[str, str] | None = None,
    name: str | None = None,
    wait_s: float | None = None,
    boots: Sequence[int] | None = None,
) -> Check:
    """systemd unit state: ActiveState, UnitFileState and any `systemctl show` property values."""
    return _check(
        "unit",
        name=name,
        wait_s=wait_s,
        boots=boots,
        unit=unit,
        active=active,
        enabled=enabled,
        properties=properties,
    )


def command(
    argv: Sequence[str] | str,
    *,
    rc: int | None = 0,
    contains: str | Sequence[str] | None = None,
    not_contains: str | Sequence[str] | None = None,
    regex: str | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    name: str | None = None,
    wait_s: float | None = None,
    boots: Sequence[int] | None = None,
) -> Check:
    """Run a command (list = argv, str = shell) with a timeout; check exit code and output."""
    fields: dict[str, Any] = {"argv": list(argv)} if not isinstance(argv, str) else {"shell": argv}
    c = _check(
        "command",
        name=name,
        wait_s=wait_s,
        boots=boots,
        contains=contains if contains is None or isinstance(contains, str) else list(contains),
        not_contains=not_contains
        if not_contains is None or isinstance(not_contains, str)
        else list(not_contains),
        regex=regex,
        timeout=timeout,
        env=env,
        **fields,
    )
    c["rc"] = rc  # None means "any exit code" and must survive
    return c


def unit_verify(
    unit: str,
    *,
    strict: bool = True,
    allow: Sequence[str] = (),
    name: str | None = None,
    boots: Sequence[int] | None = None,
) -> Check:
    """`systemd-analyze verify` on a unit (name or path) finds nothing wrong with it or its drop-ins;
    `allow`: regexes of messages to tolerate (a known finding, named where it is used)."""
    return _check(
        "unit_verify",
        name=name,
        wait_s=None,
        boots=boots,
        unit=unit,
        strict=strict,
        allow=list(allow) or None,
    )


def tcp(
    port: int,
    host: str = "127.0.0.1",
    *,
    name: str | None = None,
    wait_s: float | None = None,
    boots: Sequence[int] | None = None,
) -> Check:
    return _check("tcp", name=name, wait_s=wait_s, boots=boots, host=host, port=port)


def kubelet_standin(
    manifest: str = "/etc/kubernetes/manifests/etcd.yaml",
    *,
    args: Sequence[str] = (),
    ready_port: int | None = None,
    ready_timeout: float = 90,
    unit: str = "kubelet-standin",
    name: str | None = None,
    boots: Sequence[int] | None = None,
) -> Check:
    """Start the kubelet TEST DOUBLE on a static pod manifest; optionally wait for a port to listen."""
    return _check(
        "kubelet_standin",
        name=name,
        wait_s=None,
        boots=boots,
        manifest=manifest,
        args=list(args),
        ready_port=ready_port,
        ready_timeout=ready_timeout if ready_port is not None else None,
        unit=unit,
    )
