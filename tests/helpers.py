"""Shared helpers for the end-to-end tests: run the real CLI, hash a tree."""

from __future__ import annotations

import base64
import difflib
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from functools import cache
from pathlib import Path
from typing import Any

from builder.node import cloudinit, distribute
from builder.pki import secrets
from builder.plan import ClusterPlan, build_plan
from builder.validation.profile import load_profile

BAKE = [sys.executable, "-m", "builder.cli"]
REPO = Path(__file__).resolve().parents[1]


@cache
def plan_of(name: str, *sets: str) -> ClusterPlan:
    """The plan of an embedded profile (or a profile file) with `--set` overrides; shared by every test
    of the session, so a test changes a copy (`dataclasses.replace`, `model_copy`), never the plan."""
    return build_plan(load_profile(name, list(sets)))


def rendered_node(plan: ClusterPlan, name: str) -> cloudinit.RenderedNode:
    """One node rendered as a bake renders it, with a secrets bundle made for its plan (the real secrets
    stage, in memory)."""
    bundle, _ = secrets.reconcile(plan, None, now=secrets.utcnow())
    node = plan.node(name)
    return cloudinit.render_node(
        plan, node, pki_files=distribute.node_pki_files(plan, node, bundle), token=bundle.token,
        ca_hash=bundle.discovery_hash,
    )  # fmt: skip


FIRST_BOOT_ARCHIVE = "/usr/local/lib/bake/first-boot.tar"
"""Where the seed's write_files puts the shared first-boot program's archive (runcmd unpacks it)."""
WRITE_FILES_ENCODINGS = (None, "b64", "gz+b64")
"""The encodings bake writes; a test meeting another one fails rather than misreading it."""
KEY_PACK = "/etc/bake/keys.json"
KEY_PACK_PROGRAM = "/usr/local/lib/bake/bootstrap/keypack.py"
"""The node's RSA keys and kubeconfigs as their primes, and the program its prep phase unpacks them with."""


def write_file_content(entry: dict[str, Any]) -> bytes:
    """A write_files entry's content as cloud-init writes it to disk, decoded here with Python's own
    base64 and gzip (never the code under test)."""
    encoding = entry.get("encoding")
    assert encoding in WRITE_FILES_ENCODINGS, f"{entry.get('path')}: unexpected encoding {encoding}"
    raw = entry.get("content", "")
    if encoding is None:
        return str(raw).encode()
    data = base64.b64decode(raw, validate=True)
    return gzip.decompress(data) if encoding == "gz+b64" else data


def disk_files(doc: dict[str, Any]) -> dict[str, tuple[bytes, str, str]]:
    """path -> (content, permissions, owner) of what a cloud-config's write_files leaves on the node once
    runcmd has unpacked the first-boot archive (read here with Python's tarfile) and the prep phase its
    key pack (with the program the seed ships, as the node runs it); neither the archive nor the pack is
    listed. A path written twice fails."""
    out: dict[str, tuple[bytes, str, str]] = {}
    members: dict[str, tuple[bytes, str, str]] = {}
    for entry in doc.get("write_files", []):
        content = write_file_content(entry)
        if entry["path"] == FIRST_BOOT_ARCHIVE:
            with tarfile.open(fileobj=io.BytesIO(content), mode="r:") as tar:
                for info in tar:
                    assert info.isreg(), info.name
                    handle = tar.extractfile(info)
                    assert handle is not None
                    owner = f"{info.uname}:{info.gname}"
                    members["/" + info.name] = (handle.read(), f"{info.mode:04o}", owner)
            continue
        out[entry["path"]] = (content, str(entry.get("permissions", "")), str(entry.get("owner", "")))
    assert not set(out) & set(members), set(out) & set(members)
    out |= members
    if KEY_PACK in out:
        pack, permissions, _ = out.pop(KEY_PACK)
        assert permissions == "0600", permissions
        program: dict[str, Any] = {}
        exec(compile(out[KEY_PACK_PROGRAM][0], KEY_PACK_PROGRAM, "exec"), program)  # the shipped bytes
        unpacked = program["unpack"](json.loads(pack), lambda p: out[p][0] if p in out else None)
        for path, content, mode, owner in unpacked:
            assert path not in out, path
            out[path] = (content, mode, owner)
    return out


def bake(*args: str, out: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `bake --out OUT ARGS...` as a user would, in a child process.

    It runs in OUT, so the bundle's default place (`secrets/<cluster>`, relative to the current
    directory) is OUT/secrets/<cluster>: each test's bundles stay its own (see `bundle`).
    """
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [*BAKE, "--out", str(out.resolve()), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
        cwd=out,
    )


def bake_once(*args: str, out: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`bake(...)` for a test that only reads what a fresh bake writes into an empty OUT.

    Under mutmut (MUTANT_UNDER_TEST is set) the `bake` child runs the unmutated source (the editable
    install, not mutants/), so its output is the same for every mutant: the first successful bake of
    these arguments is kept in .bake-cache next to the tests (inside mutants/, which `make mutate`
    removes) and copied into OUT for the next mutant instead of baking again. Outside mutmut it is
    `bake`.
    """
    if "MUTANT_UNDER_TEST" not in os.environ or (out.exists() and any(out.iterdir())):
        return bake(*args, out=out, env=env)
    key = hashlib.sha256(json.dumps([args, sorted((env or {}).items())]).encode()).hexdigest()[:24]
    cached = REPO / ".bake-cache" / key
    if not (cached / "result.json").is_file():
        proc = bake(*args, out=out, env=env)
        if proc.returncode == 0:
            shutil.rmtree(cached, ignore_errors=True)
            shutil.copytree(out, cached / "out", symlinks=True)
            (cached / "result.json").write_text(json.dumps([proc.stdout, proc.stderr]))
        return proc
    stdout, stderr = json.loads((cached / "result.json").read_text())
    shutil.copytree(cached / "out", out, symlinks=True, dirs_exist_ok=True)
    return subprocess.CompletedProcess([*BAKE, "--out", str(out.resolve()), *args], 0, stdout, stderr)


def bundle(out: Path, cluster: str) -> Path:
    """The secrets bundle `bake(..., out=OUT)` keeps for a cluster."""
    return out / "secrets" / cluster


def check(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `bake check TREE ARGS...` where `bake` ran, so it finds the cluster's bundle."""
    return subprocess.run(
        [*BAKE, "check", str(tree.resolve()), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tree.parent,
    )


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# (golden path, one-line summary, unified diff) of each golden rewritten by this run; conftest.py prints
# them at the end, so a refresh (`make golden`) shows what changed instead of rewriting silently
GOLDEN_CHANGES: list[tuple[Path, str, str]] = []


def golden_diff(path: Path, old: bytes | None, new: bytes, context: int = 2) -> tuple[str, str]:
    """(summary, unified diff) between a golden's bytes and new bytes."""
    if old is None:
        return f"new, {len(new.splitlines())} lines", ""
    try:
        a, b = old.decode().splitlines(keepends=True), new.decode().splitlines(keepends=True)
    except UnicodeDecodeError:
        return f"binary, {len(old)} -> {len(new)} bytes", ""
    name = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    diff = list(difflib.unified_diff(a, b, f"{name} (golden)", f"{name} (now)", n=context))
    added = sum(1 for d in diff if d.startswith("+") and not d.startswith("+++"))
    removed = sum(1 for d in diff if d.startswith("-") and not d.startswith("---"))
    return f"+{added} -{removed} lines", "".join(diff)


def check_golden(path: Path, content: bytes) -> None:
    """Compare with a golden file; UPDATE_GOLDEN=1 (`make golden`) rewrites it and records the diff."""
    old = path.read_bytes() if path.is_file() else None
    if os.environ.get("UPDATE_GOLDEN"):
        if old != content:
            summary, diff = golden_diff(path, old, content)
            GOLDEN_CHANGES.append((path, summary, diff))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        return
    compare_golden(path, content)


def compare_golden(path: Path, content: bytes) -> None:
    """Compare with a golden file, whatever UPDATE_GOLDEN says: for a test that renders one part of a
    golden another test writes whole."""
    old = path.read_bytes() if path.is_file() else None
    assert old is not None, f"missing golden {path}: run `make golden`"
    if old != content:
        summary, diff = golden_diff(path, old, content)
        shown = "".join(diff.splitlines(keepends=True)[:60])
        raise AssertionError(
            f"{path} differs ({summary}); if intended, refresh with `make golden` and review:\n{shown}"
        )


def remove_stale_golden(path: Path) -> None:
    """A golden nothing renders any more: UPDATE_GOLDEN=1 removes it (and records it), else it fails."""
    if not os.environ.get("UPDATE_GOLDEN"):
        raise AssertionError(f"stale golden {path}: nothing renders it; `make golden` removes it")
    GOLDEN_CHANGES.append((path, f"removed, {len(path.read_bytes().splitlines())} lines", ""))
    path.unlink()
    for parent in path.parents:  # the directories it leaves empty
        if parent == REPO or any(parent.iterdir()):
            break
        parent.rmdir()


OVERLAYS = r"""mount --make-rprivate /
for d in etc var usr/local; do
    mkdir -p "$S/upper/$d" "$S/work/$d"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$S/upper/$d,workdir=$S/work/$d" "/$d"
done
"""
"""Shell for a root sandbox run inside `unshare -m` with $S its scratch folder: /etc, /var and /usr/local
become overlays, so nothing written there reaches the host."""
