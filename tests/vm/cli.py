"""Command line of the VM harness (what `make vm-image` and `make vm-test PROFILE=...` call)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from . import expect, nodecheck
from .harness import HarnessError, VmResult, VmSpec, qemu_available, run_vms
from .image import ARCHES, ImageBuildError, ensure_image, runs_root


def load_profile_specs(
    profile_dir: Path, *, memory_mb: int, reboots: int
) -> list[tuple[VmSpec, dict[str, Any]]]:
    """One VmSpec per node of a bake output tree, with every per-node check of nodecheck.py."""
    manifest_path = profile_dir / "manifest.json"
    try:
        _, nodes = nodecheck.load_tree(profile_dir)
        if not nodes:
            raise ValueError("'nodes' must be a non-empty list")
    except nodecheck.TreeError as e:
        raise HarnessError(f"{profile_dir}: the output tree contradicts itself: {e}") from e
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise HarnessError(f"{manifest_path}: {type(e).__name__}: {e}") from e
    specs = []
    for node in nodes:
        checks = nodecheck.node_checks(
            node, nodes, reboot_boots=list(range(2, reboots + 2)) if reboots else ()
        )
        extra_path = profile_dir / "nodes" / node.name / "vm-expectations.json"
        if extra_path.exists():
            checks += list(json.loads(extra_path.read_text()).get("checks", []))
        spec = VmSpec(
            name=node.name,
            arch=node.arch,
            seed_iso=node.seed_iso,
            mac=node.mac,
            memory_mb=memory_mb,
            expectations=expect.expectations(*checks),
            reboots=reboots,
        )
        specs.append((spec, {"name": node.name, "role": node.role, "arch": node.arch}))
    return specs


def print_table(rows: list[tuple[dict[str, Any], VmResult]]) -> None:
    header = ("node", "role", "arch", "result", "boots", "failed checks", "time", "serial log")
    table = [header]
    for node, r in rows:
        failed = r.failing_checks()
        findings = [f for res in r.results for f in nodecheck.cloud_init_findings(res)]
        table.append(
            (
                r.name,
                str(node.get("role", "")),
                str(node.get("arch") or "amd64"),
                "PASS" if r.ok and not findings else ("TIMEOUT" if r.timed_out else "FAIL"),
                f"{len(r.results)}/{r.expected_boots}",
                ", ".join(sorted({c.get("name", "?") for _, c in failed} | set(findings[:1])))[:80] or "-",
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
    timeout = a.timeout or (300 + 120 * len(specs)) * (1 + a.reboots)
    workdir = a.workdir or runs_root() / profile_dir.absolute().name  # outputs/<cluster> is a symlink
    results = run_vms(specs, workdir=workdir, timeout_s=timeout)
    for r in results:
        findings = [f for res in r.results for f in nodecheck.cloud_init_findings(res)]
        if findings:
            print(f"[vm] {r.name}: cloud-init was not clean:", *findings, sep="\n  ", file=sys.stderr)
    print_table([(node, r) for (_, node), r in zip(pairs, results, strict=True)])
    clean = all(r.ok and not any(nodecheck.cloud_init_findings(x) for x in r.results) for r in results)
    return 0 if clean else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.vm", description="bake QEMU test harness")
    sub = p.add_subparsers(dest="cmd", required=True)
    pi = sub.add_parser("image", help="build (or reuse) the cached guest image")
    pi.add_argument("--arch", choices=ARCHES, default="amd64")
    pr = sub.add_parser("run", help="boot every node of a baked output tree and report pass/fail")
    pr.add_argument("--profile-dir", type=Path, required=True, help="outputs/<cluster> (has manifest.json)")
    pr.add_argument(
        "--workdir",
        type=Path,
        help="where overlays and serial logs go (default .cache/vm/runs/<cluster> in the checkout)",
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
