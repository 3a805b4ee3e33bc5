"""Command line of the VM harness (what `make vm-image` and `make vm-test PROFILE=...` call)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from . import expect
from .harness import HarnessError, VmResult, VmSpec, qemu_available, run_vms
from .image import ARCHES, ImageBuildError, ensure_image, repo_root


def node_expectations(node: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What every baked node must show after boot: its name, its address, and bootstrap at its stop."""
    checks = [expect.hostname(node["name"])]
    if node.get("ip"):
        checks.append(expect.address(node["mac"], str(node["ip"])))
    checks.append(
        expect.command(
            "test -e /var/lib/bake/bootstrap.stopped || test -e /var/lib/bake/bootstrap.done",
            name="bake-bootstrap reached its test stop (or finished)",
        )
    )
    if extra:
        checks += list(extra.get("checks", []))
    return expect.expectations(*checks)


def load_profile_specs(
    profile_dir: Path, *, memory_mb: int, reboots: int
) -> list[tuple[VmSpec, dict[str, Any]]]:
    manifest_path = profile_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        nodes = manifest["nodes"]
        if not isinstance(nodes, list) or not nodes:
            raise ValueError("'nodes' must be a non-empty list")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise HarnessError(f"{manifest_path}: {e}") from e
    specs = []
    for i, node in enumerate(nodes):
        for key in ("name", "mac"):
            if not node.get(key):
                raise HarnessError(f"{manifest_path}: nodes[{i}].{key} is missing")
        node_dir = profile_dir / "nodes" / node["name"]
        extra_path = node_dir / "vm-expectations.json"
        extra = json.loads(extra_path.read_text()) if extra_path.exists() else None
        spec = VmSpec(
            name=node["name"],
            arch=node.get("arch") or "amd64",
            seed_iso=node_dir / "seed.iso",
            mac=node["mac"],
            memory_mb=memory_mb,
            expectations=node_expectations(node, extra),
            reboots=reboots,
        )
        specs.append((spec, node))
    return specs


def print_table(rows: list[tuple[dict[str, Any], VmResult]]) -> None:
    header = ("node", "role", "arch", "result", "boots", "failed checks", "time", "serial log")
    table = [header]
    for node, r in rows:
        failed = r.failing_checks()
        table.append(
            (
                r.name,
                str(node.get("role", "")),
                str(node.get("arch") or "amd64"),
                "PASS" if r.ok else ("TIMEOUT" if r.timed_out else "FAIL"),
                f"{len(r.results)}/{r.expected_boots}",
                ", ".join(sorted({c.get("name", "?") for _, c in failed}))[:60] or "-",
                f"{r.elapsed_s:.0f}s",
                str(r.serial_log),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def cmd_image(a: argparse.Namespace) -> int:
    started = time.monotonic()
    img = ensure_image(a.arch)
    meta = json.loads((img.directory / "image.json").read_text())
    print(
        f"{a.arch} image {img.directory.name} (kernel {meta['kernel_version']}, "
        f"ready in {time.monotonic() - started:.0f} s)"
    )
    for p in (img.kernel, img.initrd, img.rootfs):
        print(f"  {p}")
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    profile_dir: Path = a.profile_dir
    pairs = load_profile_specs(profile_dir, memory_mb=a.memory, reboots=a.reboots)
    for arch in sorted({s.arch for s, _ in pairs}):
        reason = qemu_available(arch)
        if reason:
            print(f"cannot boot {arch} VMs here: {reason}", file=sys.stderr)
            return 2
    specs = [s for s, _ in pairs]
    timeout = a.timeout or (240 + 90 * len(specs)) * (1 + a.reboots)
    workdir = a.workdir or repo_root() / ".cache" / "vm" / "runs" / profile_dir.resolve().name
    results = run_vms(specs, workdir=workdir, timeout_s=timeout)
    print_table([(node, r) for (_, node), r in zip(pairs, results, strict=True)])
    return 0 if all(r.ok for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.vm", description="bake QEMU test harness")
    sub = p.add_subparsers(dest="cmd", required=True)
    pi = sub.add_parser("image", help="build (or reuse) the cached guest image")
    pi.add_argument("--arch", choices=ARCHES, default="amd64")
    pr = sub.add_parser("run", help="boot every node of a baked output tree and report pass/fail")
    pr.add_argument("--profile-dir", type=Path, required=True, help="outputs/<cluster> (has manifest.json)")
    pr.add_argument(
        "--workdir", type=Path, help="where overlays and serial logs go (default .cache/vm/runs/<cluster>)"
    )
    pr.add_argument(
        "--timeout", type=int, default=0, help="seconds for the whole run (default scales with nodes)"
    )
    pr.add_argument("--memory", type=int, default=1024, help="MiB per VM")
    pr.add_argument(
        "--reboots", type=int, default=0, help="reboot each node this many times (state must survive)"
    )
    a = p.parse_args(argv)
    try:
        return cmd_image(a) if a.cmd == "image" else cmd_run(a)
    except (HarnessError, ImageBuildError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
