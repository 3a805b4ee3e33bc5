"""`make bench`: speed and memory figures for bake, printed side by side (nothing asserted).

Each bake runs in its own child process so its wall time and peak RSS are its own. Targets from the
benchmark issue are printed next to the figures with a met / MISSED mark.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import yaml

PY = sys.executable


class Summary:
    """Every figure of the performance issue's table, printed side by side with its target at the end."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, bool | None]] = []

    def add(self, what: str, now: str, target: str, ok: bool | None) -> None:
        self.rows.append((what, now, target, ok))

    def print(self) -> None:
        print("\n== summary: figures against the targets of the performance issue ==")
        width = max(len(w) for w, _, _, _ in self.rows)
        nwidth = max(len(n) for _, n, _, _ in self.rows)
        twidth = max(len(t) for _, _, t, _ in self.rows)
        for what, now, target, ok in self.rows:
            verdict = "-" if ok is None else mark(ok)
            print(f"{what:<{width}}  {now:>{nwidth}}  {target:<{twidth}}  {verdict}")


SUMMARY = Summary()


def fleet_profile(directory: Path, workers: int) -> Path:
    """3 control planes + N workers, extending the embedded ha-stacked profile."""
    nodes = [
        {
            "name": f"cp-{i}",
            "role": "control-plane",
            "ip": f"10.77.0.{10 + i}",
            "mac": f"52:54:00:77:00:{10 + i:02x}",
        }
        for i in range(1, 4)
    ]
    for w in range(workers):
        hi, lo = divmod(w, 250)
        nodes.append(
            {
                "name": f"worker-{w + 1}",
                "role": "worker",
                "ip": f"10.78.{hi}.{lo + 2}",
                "mac": f"52:54:01:{hi:02x}:{lo // 256:02x}:{lo % 256:02x}",
            }
        )
    profile = {
        "extends": "ha-stacked",
        "cluster": {"name": f"fleet-{workers}"},
        "defaults": {"prefixLength": 16, "gateway": "10.77.0.1"},
        "nodes": nodes,
    }
    path = directory / f"fleet-{workers}.yaml"
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    return path


def measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MiB) of one child process, measured from a fresh wrapper."""
    wrapper = (
        "import resource, subprocess, sys, time, json;"
        "t = time.perf_counter();"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "w = time.perf_counter() - t;"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024;"
        "print(json.dumps([p.returncode, w, r, p.stdout[-2000:], p.stderr[-2000:]]))"
    )
    out = subprocess.run([PY, "-c", wrapper, *cmd], capture_output=True, text=True, env=env, check=True)
    rc, wall, rss, stdout, stderr = json.loads(out.stdout)
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({rc}):\n{stderr}")
    return wall, rss, stdout


def bake_cmd(profile: str | Path, out: Path, *extra: str) -> list[str]:
    """The bundle goes to OUT/secrets/<profile name> (each bench profile names its cluster after itself)."""
    kept = out / "secrets" / Path(str(profile)).stem
    return [PY, "-m", "builder.cli", "--profile", str(profile), "--out", str(out), "--secrets", str(kept),
            "--quiet", *extra]  # fmt: skip


def mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def bench_fleets(work: Path, sizes: list[int]) -> dict[int, tuple[float, float]]:
    print("\n== bake wall time and peak RSS (PKI, rendering, ISOs, manifest) ==")
    print(f"{'profile':<22}{'nodes':>7}{'wall s':>10}{'peak MiB':>10}{'ms/node':>10}")
    figures: dict[int, tuple[float, float]] = {}
    wall, rss, _ = measured(bake_cmd("ha-stacked", work / "out-ha"))
    print(f"{'ha-stacked':<22}{5:>7}{wall:>10.2f}{rss:>10.1f}{1000 * wall / 5:>10.1f}")
    for n in sizes:
        profile = fleet_profile(work, n)
        wall, rss, _ = measured(bake_cmd(profile, work / f"out-{n}"))
        figures[n] = (wall, rss)
        print(f"{f'3 cp + {n} workers':<22}{n + 3:>7}{wall:>10.2f}{rss:>10.1f}{1000 * wall / (n + 3):>10.1f}")
    if len(sizes) >= 2:
        (a, (wa, _)), (b, (wb, _)) = list(figures.items())[-2:]
        print(
            f"marginal cost per node between {a + 3} and {b + 3} nodes: {1000 * (wb - wa) / (b - a):.2f} ms"
        )
    biggest = max(sizes)
    print(
        f"target: peak RSS < 150 MiB at {biggest + 3} nodes: {figures[biggest][1]:.1f} MiB — "
        f"{mark(figures[biggest][1] < 150)}"
    )
    wall, rss = figures[biggest]
    SUMMARY.add(f"bake of 3 cp + {biggest} workers", f"{wall:.2f} s, {rss:.0f} MiB", "", None)
    return figures


def bench_big(work: Path, figures: dict[int, tuple[float, float]], workers: int) -> None:
    """10,000 nodes: per-node cost no worse than at the largest regular size, peak RSS bounded."""
    print(f"\n== 3 cp + {workers} workers ==")
    profile = fleet_profile(work, workers)
    wall, rss, _ = measured(bake_cmd(profile, work / f"out-{workers}"))
    print(f"{workers + 3} nodes: {wall:.2f} s, peak {rss:.1f} MiB, {1000 * wall / (workers + 3):.2f} ms/node")
    again, again_rss, _ = measured(bake_cmd(profile, work / f"out-{workers}"))
    print(f"unchanged re-bake: {again:.2f} s, peak {again_rss:.1f} MiB")
    shutil.rmtree(work / f"out-{workers}", ignore_errors=True)
    base = max(figures)
    base_ms = 1000 * figures[base][0] / (base + 3)
    per_node = 1000 * wall / (workers + 3)
    SUMMARY.add(
        f"{workers + 3} nodes: ms per node vs at {base + 3}",
        f"{per_node:.2f} vs {base_ms:.2f}",
        "linear (<= 1.2x)",
        per_node <= 1.2 * base_ms,
    )
    SUMMARY.add(f"{workers + 3} nodes: peak RSS", f"{rss:.0f} MiB", "<= 250 MiB", rss <= 250)
    SUMMARY.add(
        f"{workers + 3} nodes, unchanged re-bake: peak RSS",
        f"{again_rss:.0f} MiB ({again:.2f} s)",
        "<= 250 MiB",
        again_rss <= 250,
    )


def bench_localds(work: Path, workers: int, bake_wall: float) -> float | None:
    localds = shutil.which("cloud-localds")
    print("\n== the same seeds packed by cloud-localds, one process per seed ==")
    if localds is None:
        print("cloud-localds not installed (Debian package cloud-image-utils): skipped")
        SUMMARY.add("bake / cloud-localds", "not measured (no cloud-localds)", "<= 0.12", None)
        return None
    tree = (work / f"out-{workers}" / f"fleet-{workers}").resolve()
    nodes = sorted(p for p in (tree / "nodes").iterdir() if p.is_dir())
    dest = work / "localds"
    dest.mkdir(exist_ok=True)
    t = time.perf_counter()
    for node in nodes:
        subprocess.run(
            [
                localds,
                "--network-config",
                str(node / "network-config"),
                str(dest / f"{node.name}.iso"),
                str(node / "user-data"),
                str(node / "meta-data"),
            ],
            check=True,
            capture_output=True,
        )
    wall = time.perf_counter() - t
    print(f"cloud-localds: {len(nodes)} seeds in {wall:.2f} s ({1000 * wall / len(nodes):.1f} ms/seed)")
    ratio = bake_wall / wall
    print(
        f"bake (everything) / cloud-localds (ISOs only) = {ratio:.2f}; target <= 0.12: {mark(ratio <= 0.12)}"
    )
    SUMMARY.add(
        f"bake of {len(nodes)} nodes / cloud-localds of the same seeds",
        f"{bake_wall:.2f} / {wall:.2f} s = {ratio:.2f}",
        "<= 0.12",
        ratio <= 0.12,
    )
    return wall


def bench_floor(work: Path, workers: int, localds_wall: float) -> None:
    """What the bake / cloud-localds target leaves for rendering: the fleet's PKI on every core, plus
    packing and writing the baked seeds (gzip, ISO, the node's and HTTP files, through the bake's own
    output writer) with rendering taken as free, split ideally over the cores."""
    from builder import parallel
    from builder.emit import packaging
    from builder.emit.outputs import OutputTree
    from builder.pki import secrets
    from builder.plan import build_plan
    from builder.validation.profile import load_profile

    print("\n== the floor under bake / cloud-localds: PKI and packing, rendering taken as free ==")
    tree = (work / f"out-{workers}" / f"fleet-{workers}").resolve()
    seeds = {
        node.name: {name: (node / name).read_bytes() for name in packaging.SEED_NAMES}
        for node in sorted(p for p in (tree / "nodes").iterdir() if p.is_dir())
    }
    published = {p.name for p in (tree / "http").iterdir()} if (tree / "http").is_dir() else set()
    plan = build_plan(load_profile(str(fleet_profile(work, workers)), []))
    jobs = parallel.default_jobs()
    t = time.perf_counter()
    secrets.reconcile(plan, None, now=datetime.now(UTC), jobs=jobs)
    pki_wall = time.perf_counter() - t
    t = time.perf_counter()
    with OutputTree(work / "floor", plan.name) as out:
        for name, seed in seeds.items():
            gz = packaging.gzip_bytes(seed["user-data"])
            http = name in published
            for art in packaging.seed_artifacts(name, seed, epoch=0, base_url=None, gz=gz, http=http):
                out.write(art.rel, art.data, art.mode, art.same_as)
    packing = time.perf_counter() - t
    floor = pki_wall + packing / jobs
    print(
        f"PKI of the fleet ({jobs} processes) {pki_wall:.2f} s; packing and writing {len(seeds)} seeds "
        f"{packing:.2f} s in one process ({1000 * packing / len(seeds):.2f} ms a seed)"
    )
    print(
        f"floor: {pki_wall:.2f} + {packing:.2f} / {jobs} cores = {floor:.2f} s = {floor / localds_wall:.2f} "
        f"of cloud-localds ({localds_wall:.2f} s), before Python starts or a node is rendered"
    )
    SUMMARY.add(
        f"  its floor: PKI + packing on {jobs} cores, nothing rendered",
        f"{floor:.2f} / {localds_wall:.2f} s = {floor / localds_wall:.2f}",
        "",
        None,
    )


def _time(fn: Callable[[], object], repeat: int = 1) -> float:
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return time.perf_counter() - t


def bench_pki(work: Path) -> None:
    from builder import parallel
    from builder.pki import crypto as pki
    from builder.pki import secrets
    from builder.plan import build_plan
    from builder.validation.profile import load_profile

    print("\n== PKI for ha-stacked per encryptionAlgorithm ==")
    print(
        f"{'algorithm':<12}{'keys':>6}{'floor s':>9}{'bake s':>9}{'ratio':>7}{'openssl s':>11}"
        "  target ratio <= 0.6 (RSA-2048, both cores)"
    )
    openssl = shutil.which("openssl")
    for alg in pki.KeyAlgorithm:
        version = "1.37"
        plan = build_plan(
            load_profile(
                "ha-stacked",
                [f"cluster.encryptionAlgorithm={alg.value}", f"cluster.kubernetesVersion={version}"],
            )
        )
        now = datetime.now(UTC)
        t = time.perf_counter()
        bundle, _ = secrets.reconcile(plan, None, now=now, jobs=parallel.default_jobs())
        full = time.perf_counter() - t
        keys = len(bundle.cas) + 1 + sum(len(v) for v in bundle.leaves.values())
        floor = _time(lambda alg=alg: alg.generate(), keys)
        ossl = "-"
        if openssl:
            ossl = f"{_openssl_pki(work, openssl, alg.value, keys):.2f}"
        ratio = full / floor
        print(
            f"{alg.value:<12}{keys:>6}{floor:>9.2f}{full:>9.2f}{ratio:>7.2f}{ossl:>11}  {mark(ratio <= 0.6)}"
        )
        if alg is pki.KeyAlgorithm.RSA_2048:
            SUMMARY.add(
                f"ha-stacked PKI (RSA-2048) / its {keys} keys generated serially",
                f"{full:.2f} / {floor:.2f} s = {ratio:.2f}",
                "<= 0.60",
                ratio <= 0.6,
            )


def _openssl_pki(work: Path, openssl: str, alg: str, count: int) -> float:
    """The same number of keys + certificates made by the openssl CLI (one CA, count-1 leaves)."""
    d = Path(tempfile.mkdtemp(dir=work))
    if alg.startswith("RSA"):
        newkey = ["-newkey", f"rsa:{alg.split('-')[1]}"]
    else:
        curve = {"ECDSA-P256": "prime256v1", "ECDSA-P384": "secp384r1"}[alg]
        newkey = ["-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{curve}"]
    t = time.perf_counter()
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-nodes",
            *newkey,
            "-keyout",
            str(d / "ca.key"),
            "-out",
            str(d / "ca.crt"),
            "-subj",
            "/CN=kubernetes",
            "-days",
            "3650",
        ],
        check=True,
        capture_output=True,
    )
    for i in range(count - 1):
        subprocess.run(
            [
                openssl,
                "req",
                "-x509",
                "-nodes",
                *newkey,
                "-keyout",
                str(d / f"{i}.key"),
                "-out",
                str(d / f"{i}.crt"),
                "-subj",
                f"/CN=leaf-{i}",
                "-CA",
                str(d / "ca.crt"),
                "-CAkey",
                str(d / "ca.key"),
                "-days",
                "365",
            ],
            check=True,
            capture_output=True,
        )
    return time.perf_counter() - t


def bench_rebake(work: Path, workers: int, first_wall: float) -> None:
    print("\n== re-bake with the existing secrets bundle (the common case) ==")
    profile = work / f"fleet-{workers}.yaml"
    out = work / f"out-{workers}"
    secrets_dir = (out / "secrets" / f"fleet-{workers}").resolve()
    before = {p: p.stat().st_mtime_ns for p in secrets_dir.rglob("*.key")}
    wall, rss, _ = measured(bake_cmd(profile, out))
    proc = subprocess.run(bake_cmd(profile, out)[:-1], capture_output=True, text=True, check=True)
    summary = next((line for line in proc.stdout.splitlines() if line.startswith("wrote ")), "")
    after_dir = (out / "secrets" / f"fleet-{workers}").resolve()
    after = {p.relative_to(after_dir): p.stat().st_mtime_ns for p in after_dir.rglob("*.key")}
    same_keys = all(after.get(p.relative_to(secrets_dir)) == m for p, m in before.items())
    print(f"re-bake of {workers + 3} nodes: {wall:.2f} s, peak {rss:.1f} MiB; {summary.strip()}")
    print(
        f"keys regenerated: {'none' if same_keys else 'SOME'} — {mark(same_keys)}; "
        f"rewrites nothing unchanged: {mark(summary.startswith('wrote 0 files'))}"
    )
    ratio = wall / first_wall
    SUMMARY.add(
        f"re-bake of the unchanged {workers + 3} nodes / first bake",
        f"{wall:.2f} / {first_wall:.2f} s = {ratio:.2f}",
        "<= 0.10",
        ratio <= 0.10,
    )
    # the everyday edit: one worker's address (the same cluster and bundle, so the same profile name)
    data = yaml.safe_load(profile.read_text())
    data["nodes"][-1]["ip"] = "10.79.0.2"
    edited = work / "edited" / profile.name
    edited.parent.mkdir(exist_ok=True)
    edited.write_text(yaml.safe_dump(data, sort_keys=False))
    wall, rss, _ = measured(bake_cmd(edited, out))
    print(f"re-bake after one worker's address changed: {wall:.2f} s, peak {rss:.1f} MiB")
    SUMMARY.add(f"re-bake of {workers + 3} nodes, one worker's address changed", f"{wall:.2f} s", "", None)


def bench_check(work: Path, workers: int) -> None:
    print(f"\n== bake check of the {workers + 3}-node tree ==")
    tree = (work / f"out-{workers}" / f"fleet-{workers}").resolve()
    bundle = work / f"out-{workers}" / "secrets" / f"fleet-{workers}"  # where bake_cmd keeps it
    wall, rss, stdout = measured([PY, "-m", "builder.cli", "check", str(tree), "--secrets", str(bundle)])
    last = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    print(f"{wall:.2f} s, peak {rss:.1f} MiB: {last}")
    schema = "cloud-init schema" if shutil.which("cloud-init") else "no cloud-init: schema NOT checked"
    SUMMARY.add(f"bake check of {workers + 3} nodes ({schema})", f"{wall:.2f} s", "<= 15 s", wall <= 15)


AWS, RAW_TARGET = 16_384, 65_535  # EC2's cap (it takes gzip); the issue's target for a control plane, raw
EMBEDDED = ("single-node", "single-master", "ha-stacked", "ha-external-etcd", "etcd-cluster")
ECDSA = "cluster.encryptionAlgorithm=ECDSA-P256"


def readme_profile(directory: Path) -> Path:
    """The README's example profile (every option set), without its air gap: that needs image archives
    (tests/test_readme_example.py bakes it with them)."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = text.index("A profile (keys are camelCase")
    doc = yaml.safe_load(text[start:].split("```yaml\n", 1)[1].split("```", 1)[0])
    del doc["cluster"]["airgap"]
    path = directory / "readme-example.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _largest_per_role(tree: Path) -> dict[str, tuple[int, int]]:
    """role -> (raw, gzip) user-data size of its largest seed."""
    manifest = json.loads((tree / "manifest.json").read_text())
    by_role: dict[str, tuple[int, int]] = {}
    for node in manifest["nodes"]:
        d = tree / "nodes" / node["name"]
        sizes = ((d / "user-data").stat().st_size, (d / "user-data.gz").stat().st_size)
        by_role[node["role"]] = max(by_role.get(node["role"], (0, 0)), sizes)
    return by_role


def bench_seed_sizes(work: Path) -> None:
    """Largest raw and gzip user-data per role of every embedded profile, ha-stacked with ECDSA-P256 keys
    and the README's example, against the caps: a worker's user-data.gz within AWS's (EC2 takes gzip),
    a control plane's raw user-data within 65,535 bytes, and the file each cloud would be given, as
    the bake decides it (packaging.CAPS: Nova counts base64, Azure bytes; both take gzip)."""
    from builder.emit.packaging import CAPS
    from builder.model import SizeTarget

    clouds = (SizeTarget.AWS, SizeTarget.OPENSTACK, SizeTarget.AZURE)
    print(
        "\n== seed sizes: largest user-data per role, raw / gzip (bytes), and what each cloud takes "
        "(aws 16,384 bytes, openstack 65,535 of base64, azure 65,535 bytes; all three take gzip) =="
    )
    runs: list[tuple[str, str | Path, tuple[str, ...]]] = [(p, p, ()) for p in EMBEDDED]
    runs += [("ha-stacked, ECDSA-P256", "ha-stacked", (ECDSA,)),
             ("README example (no air gap)", readme_profile(work), ()),
             ("README example, ECDSA-P256", readme_profile(work), (ECDSA,))]  # fmt: skip
    for i, (label, profile, sets) in enumerate(runs):
        out = work / f"sizes-{i}"
        extra = [a for s in sets for a in ("--set", s)]
        subprocess.run(bake_cmd(profile, out, *extra), check=True, capture_output=True)
        (tree,) = [p for p in out.iterdir() if p.is_symlink()]
        by_role = _largest_per_role(tree.resolve())
        cells = []
        for role, (raw, gz) in sorted(by_role.items()):
            takes = ", ".join(f"{c.value} {CAPS[c].ships(raw, gz) or 'no'}" for c in clouds)
            cells.append(f"{role} {raw:,} / {gz:,} ({takes})")
        print(f"{label}: {'; '.join(cells)}")
        if "worker" in by_role:
            raw, gz = by_role["worker"]
            SUMMARY.add(f"{label}: worker user-data (aws via gzip)", f"{raw:,} / gz {gz:,} B",
                        f"gz <= {AWS:,} B", gz <= AWS)  # fmt: skip
        if "control-plane" in by_role:
            raw, gz = by_role["control-plane"]
            SUMMARY.add(f"{label}: control plane raw user-data", f"{raw:,} B", f"<= {RAW_TARGET:,} B",
                        raw <= RAW_TARGET)  # fmt: skip
            for cloud in (SizeTarget.OPENSTACK, SizeTarget.AZURE):
                ships = CAPS[cloud].ships(raw, gz)
                SUMMARY.add(f"{label}: control plane on {cloud.value}", ships or "does not fit", "", None)


def with_bytecode() -> None:
    """Bake as an installed tool runs, from its compiled bytecode: with PYTHONDONTWRITEBYTECODE set (as in
    some shells and CI images), every child bake would compile the tool's modules from source again, a
    cost no installed `bake` pays."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False
    package = Path(__file__).resolve().parents[1] / "builder"
    subprocess.run([PY, "-m", "compileall", "-q", str(package)], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="10,100,1000", help="worker counts (default: %(default)s)")
    ap.add_argument(
        "--big",
        type=int,
        default=0,
        metavar="WORKERS",
        help="also bake 3 cp + WORKERS workers (the issue's 10,000 nodes: --big 9997; takes minutes)",
    )
    ap.add_argument("--seed-sizes", action="store_true", help="only the seed sizes against the clouds' caps")
    args = ap.parse_args()
    if args.seed_sizes:
        with tempfile.TemporaryDirectory(prefix="bake-bench-") as tmp:
            bench_seed_sizes(Path(tmp))
        SUMMARY.print()
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    with_bytecode()
    print(
        f"bake benchmark on {os.cpu_count()} cores, python {sys.version.split()[0]}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    with tempfile.TemporaryDirectory(prefix="bake-bench-") as tmp:
        work = Path(tmp)
        figures = bench_fleets(work, sizes)
        biggest = max(sizes)
        localds = bench_localds(work, biggest, figures[biggest][0])
        if localds is not None:
            bench_floor(work, biggest, localds)
        bench_rebake(work, biggest, figures[biggest][0])
        bench_check(work, biggest)
        bench_seed_sizes(work)
        bench_pki(work)
        if args.big:
            bench_big(work, figures, args.big)
        else:
            SUMMARY.add("10,000 nodes", "not measured (--big 9997)", "", None)
    print(
        "first-boot figures (power-on -> cloud-init -> kubeadm -> Ready): not measured here; "
        "they need the end-to-end VM tier"
    )
    SUMMARY.print()


if __name__ == "__main__":
    main()
