"""Incremental re-bake: a node whose inputs did not change is not rendered again, and a change of any
kind of input (the plan, the bundle items it receives, the token, code and templates, its previous files)
does render it again. Expected results are judged against a bake from scratch, never against the
digest function."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import sys
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder import bake
from builder.bake import incremental, render
from builder.bake.manifest import STATE_FILE, PreviousManifest
from builder.emit import outputs, packaging
from builder.pki import secrets

from .helpers import bundle, disk_files, tree_digest

PROFILE = "ha-stacked"
SETS = ("cluster.encryptionAlgorithm=ECDSA-P256",)
JOIN_CONF = "/etc/bake/join.conf"
ALL_NODES = ["cp-1", "cp-2", "cp-3", "worker-1", "worker-2"]


def _options(out: Path, *sets: str, **kw: Any) -> bake.BakeOptions:
    """The bundle beside the output root, as `bake` run there keeps it (helpers.bundle); one job."""
    kw.setdefault("jobs", 1)
    return bake.BakeOptions(
        profile=PROFILE, sets=SETS + sets, out_root=out, secrets=bundle(out, PROFILE), **kw
    )


@pytest.fixture
def rendered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the nodes rendered by the bakes of one test (jobs=1: rendering runs in this process)."""
    names: list[str] = []
    real = render.write_node

    def counting(shared: Any, index: int) -> Any:
        names.append(shared.plan.nodes[index].name)
        return real(shared, index)

    monkeypatch.setattr(render, "write_node", counting)
    return names


@pytest.fixture
def first(tmp_path: Path, rendered: list[str]) -> Path:
    result = bake.run(_options(tmp_path))
    assert sorted(rendered) == sorted(n.name for n in result.plan.nodes)
    rendered.clear()
    return tmp_path


def _nodes(out: Path) -> list[str]:
    manifest = json.loads((out / PROFILE / "manifest.json").read_bytes())
    return [n["name"] for n in manifest["nodes"]]


def _steady_file(out: Path) -> Path:
    return (out / PROFILE).resolve().parent / incremental.STEADY_FILE


def _same_as_from_scratch(out: Path, tmp_path: Path, *sets: str, **kw: Any) -> None:
    """The incremental tree equals a bake from scratch with the same bundle, file for file."""
    scratch = tmp_path / "scratch"
    shutil.copytree(bundle(out, PROFILE), bundle(scratch, PROFILE))
    manifest = json.loads((out / PROFILE / "manifest.json").read_bytes())
    bake.run(_options(scratch, *sets, **kw))
    assert tree_digest((scratch / PROFILE).resolve()) == tree_digest((out / PROFILE).resolve())
    assert manifest == json.loads((scratch / PROFILE / "manifest.json").read_bytes())


def test_unchanged_rebake_renders_nothing(first: Path, rendered: list[str], tmp_path: Path) -> None:
    before = tree_digest((first / PROFILE).resolve())
    result = bake.run(_options(first))
    assert rendered == []
    assert result.rewritten == 0
    assert tree_digest((first / PROFILE).resolve()) == before


@pytest.mark.parametrize("record", ["kept", "shuffled", "lost", "of another generation", "corrupt"])
def test_unchanged_rebake_keeps_the_current_generation(
    first: Path, rendered: list[str], record: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing changed: no new generation of links is built and swapped in; the tree stays as it is,
    every file checked against SHA256SUMS: hashed, or known unchanged by the status the bake recorded
    (in whatever order the record lists them)."""
    gen = (first / PROFILE).resolve()
    stat_file = gen.parent / outputs.STAT_FILE
    generation, *lines = stat_file.read_text().splitlines()
    assert generation == gen.name
    files = {str(p.relative_to(gen)): p.stat() for p in gen.rglob("*") if p.is_file()}
    assert sorted(line.split(" ")[-1] for line in lines) == sorted(files)
    for line in lines:  # size, mode, inode, mtime and ctime (ns) as os.stat gives them, then the path
        size, mode, ino, mtime, ctime, rel = line.split(" ")
        st = files[rel]
        assert (int(size), int(mode, 8), int(ino)) == (st.st_size, st.st_mode, st.st_ino)
        assert (int(mtime), int(ctime)) == (st.st_mtime_ns, st.st_ctime_ns)
    if record == "lost":
        stat_file.unlink()
    elif record == "shuffled":
        stat_file.write_text("\n".join([generation, *reversed(lines)]) + "\n")
    elif record == "of another generation":
        stat_file.write_text("\n".join(["gen-1", *lines]) + "\n")
    elif record == "corrupt":
        stat_file.write_bytes(b"\xff\x00garbage\n")
    inodes = {p: p.stat().st_ino for p in gen.rglob("*") if p.is_file()}
    hashed: list[str] = []
    real_hash = outputs.sha256_rewound

    def counting(fh: Any) -> tuple[str, int]:
        hashed.append(fh.name)
        return real_hash(fh)

    monkeypatch.setattr(outputs, "sha256_rewound", counting)
    result = bake.run(_options(first))
    assert rendered == [] and result.rewritten == 0
    listed = {str(gen / line.split("  ", 1)[1]) for line in (gen / "SHA256SUMS").read_text().splitlines()}
    assert sorted(hashed) == ([] if record in ("kept", "shuffled") else sorted(listed))
    assert result.tree == gen and (first / PROFILE).resolve() == gen
    assert [p.name for p in gen.parent.iterdir() if p.name.startswith("gen-")] == [gen.name]
    assert {p: p.stat().st_ino for p in gen.rglob("*") if p.is_file()} == inodes
    sums = (gen / "SHA256SUMS").read_text().splitlines()
    assert result.linked == len(sums) + 1 and set(result.written) == {line.split("  ", 1)[1] for line in sums}


@pytest.mark.parametrize(
    "damage", ["stray file", "missing file", "edited admin.conf", "user-data edited in place, times kept"]
)
def test_a_damaged_tree_is_built_again(first: Path, rendered: list[str], tmp_path: Path, damage: str) -> None:
    """The current tree is kept only when it is exactly what SHA256SUMS and the bake say: otherwise a
    new generation is built (from links where the node's inputs are unchanged) and it is whole again."""
    gen = (first / PROFILE).resolve()
    if damage == "stray file":
        (gen / "nodes" / "worker-1" / "notes.txt").write_text("left by hand\n")
    elif damage == "missing file":
        (gen / "http" / "worker-2" / "meta-data").unlink()
    elif damage == "user-data edited in place, times kept":
        # same size, mtime set back: only the ctime, which nothing can set back, tells the status apart
        user_data = gen / "nodes" / "worker-1" / "user-data"
        before = user_data.stat()
        with user_data.open("r+b") as fh:
            first_byte = fh.read(1)
            fh.seek(0)
            fh.write(b"X" if first_byte != b"X" else b"Y")
        os.utime(user_data, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = user_data.stat()
        assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
            before.st_size,
            before.st_mtime_ns,
            before.st_ino,
        )
    else:
        admin = gen / "admin.conf"
        data = admin.read_bytes()
        admin.unlink()
        admin.write_bytes(data.replace(b"server: https://", b"server: https://x"))
    result = bake.run(_options(first))
    assert result.tree != gen and (first / PROFILE).resolve() == result.tree
    assert not (result.tree / "nodes" / "worker-1" / "notes.txt").exists()
    _same_as_from_scratch(first, tmp_path)


def test_digests_made_by_worker_processes_are_the_ones_a_rebake_computes(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A first bake leaves each node's digest to the worker that renders it (other processes with
    --jobs 2); the re-bake computes them here, before rendering: the same, so it renders nothing."""
    result = bake.run(_options(tmp_path, jobs=2))
    inputs = json.loads((result.tree / incremental.INPUTS_FILE).read_bytes())
    assert sorted(inputs) == sorted(n.name for n in result.plan.nodes)
    rendered = request.getfixturevalue("rendered")  # counts from here on, in this process
    again = bake.run(_options(tmp_path))
    assert rendered == [] and again.rewritten == 0 and again.tree == result.tree


@pytest.mark.parametrize(
    ("extra", "again"),
    [
        ("nodes[4].labels={rack: r9}", ["worker-2"]),  # a worker: its own files only
        ("nodes[0].labels={rack: r9}", ALL_NODES),  # a control plane: in every node's plan inputs
        ("cluster.podSubnet=10.250.0.0/16", ALL_NODES),
    ],
)
def test_plan_change_renders_again(
    first: Path, rendered: list[str], tmp_path: Path, extra: str, again: list[str]
) -> None:
    bake.run(_options(first, extra))
    assert sorted(rendered) == again
    _same_as_from_scratch(first, tmp_path, extra)


@pytest.mark.parametrize(
    ("change", "packed"),
    [
        ("label", ["cp-1"]),  # its kubelet's labels: its seed only
        ("publish", ["cp-1", "cp-2", "cp-3"]),  # their seeds go into the HTTP tree now
        ("epoch", ALL_NODES),  # every ISO's timestamps
        ("base-url", ALL_NODES),  # the HTTP tree's PXE and iPXE snippets
    ],
)
def test_rendered_nodes_whose_files_come_out_the_same_are_not_packed_again(
    first: Path,
    rendered: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    change: str,
    packed: list[str],
) -> None:
    """A profile edit outside the workers renders every node (incremental.plan_digest); a node whose seed,
    manifest entry and packing inputs came out the same gets its previous files linked, the others are
    packed again. Judged by a bake from scratch: a packing input left out of the digest would leave a
    stale file behind."""
    sets: tuple[str, ...] = ()
    kw: dict[str, Any] = {}
    if change == "label":
        sets = ("nodes[0].labels={rack: r9}",)
    elif change == "publish":
        sets = ("cluster.seed.httpPublishControlPlanes=true",)
    elif change == "epoch":
        monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    else:
        kw["base_url"] = "http://10.0.0.1/seeds"
    names: list[str] = []
    real = packaging.node_artifacts

    def counting(rendered_node: Any, **kwargs: Any) -> Any:
        names.append(rendered_node.node.name)
        return real(rendered_node, **kwargs)

    monkeypatch.setattr(packaging, "node_artifacts", counting)
    bake.run(_options(first, *sets, **kw))
    assert sorted(rendered) == ALL_NODES
    assert sorted(names) == packed
    _same_as_from_scratch(first, tmp_path, *sets, **kw)


def test_reissued_certificates_render_their_node_only(
    first: Path, rendered: list[str], tmp_path: Path
) -> None:
    """Near expiry the leaves are re-issued: the nodes holding them are rendered, workers (no leaves with
    the shared bootstrap token) not."""
    token = "cluster.join=token"
    bake.run(_options(first, token))
    rendered.clear()
    held = secrets.load_bundle(bundle(first, PROFILE))
    assert held is not None
    soon = held.leaf("cp-1", "apiserver").cert.not_valid_after_utc - timedelta(days=10)
    result = bake.run(_options(first, token, now=soon))
    assert sorted(rendered) == ["cp-1", "cp-2", "cp-3"]
    assert {c.owner for c in result.changes} >= {"cp-1", "cp-2", "cp-3"}
    _same_as_from_scratch(first, tmp_path, token, now=soon)


def test_reissued_join_credentials_render_the_joining_nodes_only(
    first: Path, rendered: list[str], tmp_path: Path
) -> None:
    """A join credential lives cluster.joinWindow (720h by default): a bake near its end issues new ones
    for every node that joins, and renders those nodes; cp-1 (kubeadm init, no join credential) not."""
    held = secrets.load_bundle(bundle(first, PROFILE))
    assert held is not None
    late = held.leaf("worker-1", "join.conf").cert.not_valid_after_utc - timedelta(days=1)
    result = bake.run(_options(first, now=late))
    assert sorted(rendered) == ["cp-2", "cp-3", "worker-1", "worker-2"]
    assert {c.owner for c in result.changes} == {"cp-2", "cp-3", "worker-1", "worker-2"}
    _same_as_from_scratch(first, tmp_path, now=late)


def test_a_join_credential_with_another_key_renders_its_node(
    first: Path, rendered: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node's inputs digest reads its kubeconfigs' sources, not the rendered files: a join credential
    whose key alone differs (the bundle as reconcile hands it over) still renders its node again, and
    only that node."""
    spare = secrets.load_bundle(bundle(first, PROFILE)).leaf("worker-2", "join.conf")
    real = secrets.reconcile
    _steady_file(first).unlink()  # the bundle's files are unchanged: its record would keep the tree

    def other_key(*args: Any, **kw: Any) -> Any:
        held, changes = real(*args, **kw)
        join = held.leaf("worker-1", "join.conf")
        held.leaves["worker-1"]["join.conf"] = dataclasses.replace(join, key=spare.key, key_pem=spare.key_pem)
        return held, changes

    monkeypatch.setattr(secrets, "reconcile", other_key)
    result = bake.run(_options(first))
    assert rendered == ["worker-1"]
    user_data = yaml.safe_load((result.tree / "nodes" / "worker-1" / "user-data").read_bytes())
    conf = yaml.safe_load(disk_files(user_data)[JOIN_CONF][0])
    assert base64.b64decode(conf["users"][0]["user"]["client-key-data"]) == spare.key_pem


def test_rotated_token_renders_every_node(first: Path, rendered: list[str]) -> None:
    bake.run(_options(first, rotate_token=True))
    assert sorted(rendered) == sorted(_nodes(first))


def test_new_code_or_templates_render_every_node(
    first: Path, rendered: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(incremental, "tool_digest", lambda: "another version")
    bake.run(_options(first))
    assert sorted(rendered) == sorted(_nodes(first))


def test_the_environment_names_the_libraries_that_shape_the_files() -> None:
    """Python, zlib and the installed versions of the libraries whose output is in a node's files, as
    importlib.metadata reads them."""
    from importlib.metadata import distribution

    found = incremental.environment()
    assert sys.version in found and zlib.ZLIB_RUNTIME_VERSION in found
    for name in ("PyYAML", "Jinja2", "pycdlib", "zopfli", "cryptography"):
        dist = distribution(name)
        assert any(
            entry.endswith(".dist-info") and entry.lower().startswith(f"{dist.name.lower()}-{dist.version}")
            for entry in found
        ), (name, dist.version)


def test_an_upgraded_library_renders_every_node(
    first: Path, rendered: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A distribution installed or upgraded beside bake (here a PyYAML of another version in a second
    site-packages directory) changes the code digest: every node is rendered again, none is linked."""
    site = tmp_path / "lib" / "site-packages"
    (site / "PyYAML-99.0.dist-info").mkdir(parents=True)
    incremental.tool_digest.cache_clear()
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    try:
        bake.run(_options(first))
    finally:
        incremental.tool_digest.cache_clear()
    assert sorted(rendered) == sorted(_nodes(first))


def test_edited_previous_output_is_rendered_again(first: Path, rendered: list[str], tmp_path: Path) -> None:
    """A file of the previous tree that no longer matches its manifest is never carried over."""
    target = (first / PROFILE).resolve() / "nodes" / "worker-1" / "user-data"
    data = target.read_bytes()
    target.unlink()  # the file is a hard link shared with nothing else; write a new inode
    target.write_bytes(data + b"# edited\n")
    bake.run(_options(first))
    assert rendered == ["worker-1"]
    assert (first / PROFILE / "nodes" / "worker-1" / "user-data").read_bytes() == data


@pytest.mark.parametrize("state", ["kept", "lost", "of another generation", "corrupt"])
def test_reused_nodes_keep_their_manifest_entries(
    first: Path, rendered: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: str
) -> None:
    """A re-bake reads the previous entries node by node from the state's manifest.jsonl; without a
    usable one (lost, another generation's, corrupt) from manifest.json itself. Either way the reused
    nodes' entries in the new manifest are those of a bake from scratch."""
    gen = (first / PROFILE).resolve()
    lines = gen.parent / STATE_FILE
    assert json.loads(lines.read_bytes().splitlines()[-1])["generation"] == gen.name
    if state == "kept":  # read entry by entry, never manifest.json whole
        monkeypatch.setattr(PreviousManifest, "_from_tree", None)
    elif state == "lost":
        lines.unlink()
    elif state == "of another generation":
        text = lines.read_text().replace(gen.name, "gen-1")
        lines.write_text(text)
    else:
        lines.write_text("{\n")
    user_data = gen / "nodes" / "worker-1" / "user-data"
    data = user_data.read_bytes()
    user_data.unlink()
    user_data.write_bytes(data + b"# edited\n")
    bake.run(_options(first))
    assert rendered == ["worker-1"]
    _same_as_from_scratch(first, tmp_path)


def test_a_killed_bakes_manifest_lines_are_removed(first: Path, rendered: list[str]) -> None:
    """The next STATE_FILE is written beside the current one as a temporary file; one left by a killed
    bake is removed by the next bake (which holds the tree's lock), which writes its own."""
    state = (first / PROFILE).resolve().parent
    left = state / f".{STATE_FILE}.killed"
    left.write_text('"partial\n')
    result = bake.run(_options(first, "nodes[4].labels={rack: r9}"))
    assert not left.exists()
    assert [p.name for p in state.iterdir() if STATE_FILE in p.name] == [STATE_FILE]
    assert json.loads((state / STATE_FILE).read_bytes().splitlines()[-1])["generation"] == result.tree.name


def test_edited_cni_manifest_renders_again(tmp_path: Path, rendered: list[str]) -> None:
    """The profile names CNI manifests by path; the images a node checks before kubeadm come from their
    content, so an edited manifest renders every node again, and the tree equals a bake from scratch."""
    from .test_airgap import FLANNEL_CNI, site

    profile = site(tmp_path / "site")

    def options(out: Path) -> bake.BakeOptions:
        return bake.BakeOptions(profile=str(profile), out_root=out, secrets=bundle(out, "site"), jobs=1)

    out = tmp_path / "out"
    result = bake.run(options(out))
    names = sorted(n.name for n in result.plan.nodes)
    cni = tmp_path / "site" / "cni" / "kube-flannel.yml"
    edited = "".join(line for line in cni.read_text().splitlines(True) if FLANNEL_CNI not in line)
    assert edited != cni.read_text()
    cni.write_text(edited)
    rendered.clear()
    bake.run(options(out))
    assert sorted(rendered) == names
    scratch = tmp_path / "scratch"
    shutil.copytree(bundle(out, "site"), bundle(scratch, "site"))
    bake.run(options(scratch))
    assert tree_digest((scratch / "site").resolve()) == tree_digest((out / "site").resolve())


# A worker edit renders that worker only (incremental.plan_digest leaves the other workers out of every
# node's inputs). What makes that safe is that no node's files name a worker but its own: each edit below
# is baked incrementally and compared, file for file, with a bake from scratch, which renders every node
# from the edited profile. A node that did read another worker would keep a stale file and fail.
WORKER_EDITS: dict[str, dict[str, Any]] = {
    "ip": {"ip": "10.77.0.99"},
    "mac": {"mac": "52:54:00:77:00:99"},
    "interface": {"interface": "ens3"},
    "prefixLength": {"prefixLength": 16},
    "gateway": {"gateway": "10.77.0.254"},
    "dns": {"dns": ["10.77.0.53"]},
    "arch": {"arch": "arm64"},
    "os": {"os": "rocky-9"},
    "kubernetesVersion": {"kubernetesVersion": "1.36"},
    "labels": {"labels": {"rack": "r9"}},
    "kubeletExtraArgs": {"kubeletExtraArgs": [{"name": "max-pods", "value": "50"}]},
    "generation": {"generation": 3},
    "name": {"name": "worker-9"},
}
PROFILE_NODES = Path(__file__).resolve().parents[1] / "profiles"


def _site(base: str, nodes: list[dict[str, Any]], path: Path) -> Path:
    """`base` (an embedded profile, `+token` for cluster.join=token) with these nodes."""
    name, _, join = base.partition("+")
    cluster = {"encryptionAlgorithm": "ECDSA-P256", **({"join": join} if join else {})}
    path.write_text(yaml.safe_dump({"extends": name, "cluster": cluster, "nodes": nodes}, sort_keys=False))
    return path


def _worker_edit(base: str, edit: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], set[str]]:
    """(nodes before, nodes after, the workers the edit should render)."""
    profile = PROFILE_NODES / f"{base.partition('+')[0]}.yaml"
    before: list[dict[str, Any]] = yaml.safe_load(profile.read_text())["nodes"]
    workers = [i for i, n in enumerate(before) if n["role"] == "worker"]
    after = [dict(n) for n in before]
    last = after[workers[-1]]
    if edit == "added":
        after.append({**last, "name": "worker-9", "ip": "10.77.0.99", "mac": "52:54:00:77:00:99"})
        return before, after, {"worker-9"}
    if edit == "removed":  # the first worker: the others move up a place among the workers
        del after[workers[0]]
        return before, after, {after[i - 1]["name"] for i in workers[1:]}
    after[workers[-1]] = {**last, **WORKER_EDITS[edit]}
    return before, after, {after[workers[-1]]["name"]}


@pytest.mark.parametrize(
    ("base", "edit"),
    [
        *(("ha-stacked", e) for e in [*WORKER_EDITS, "added", "removed"]),
        *(
            (base, e)
            for base in ("ha-external-etcd", "single-master", "ha-stacked+token", "ipv6-ha-stacked")
            for e in ("ip", "labels", "name", "added", "removed")
            if not (base == "ipv6-ha-stacked" and e in ("ip", "added"))  # IPv4 addresses in the edits
        ),
    ],
)
def test_a_worker_edit_renders_that_worker_only(
    tmp_path: Path, rendered: list[str], base: str, edit: str
) -> None:
    before, after, expected = _worker_edit(base, edit)
    out = tmp_path / "out"

    def options(out: Path, profile: Path) -> bake.BakeOptions:
        return bake.BakeOptions(profile=str(profile), out_root=out, secrets=out / "secrets", jobs=1)

    bake.run(options(out, _site(base, before, tmp_path / "before.yaml")))
    rendered.clear()
    edited = _site(base, after, tmp_path / "after.yaml")
    bake.run(options(out, edited))
    assert set(rendered) == expected
    scratch = tmp_path / "scratch"
    shutil.copytree(out / "secrets", scratch / "secrets")
    bake.run(options(scratch, edited))
    cluster = base.partition("+")[0]
    assert tree_digest((scratch / cluster).resolve()) == tree_digest((out / cluster).resolve())


# --------------------------------------------------------------------------------------------------
# A re-bake with the same inputs: kept on them alone (incremental.steady)


def test_an_unchanged_rebake_is_kept_without_loading_the_bundle(
    first: Path, rendered: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = (first / PROFILE).resolve()
    before = tree_digest(gen)

    def refused(*args: Any, **kw: Any) -> Any:
        raise AssertionError("the bundle was loaded")

    monkeypatch.setattr(secrets, "load_bundle", refused)
    result = bake.run(_options(first))
    assert result.steady and rendered == [] and result.rewritten == 0 and not result.changes
    assert result.tree == gen and tree_digest(gen) == before
    sums = (gen / "SHA256SUMS").read_text().splitlines()
    assert result.written == dict(reversed(line.split("  ", 1)) for line in sums)
    assert result.linked == len(sums) + 1


def test_without_its_record_an_unchanged_rebake_checks_everything_and_records_again(
    first: Path, rendered: list[str]
) -> None:
    gen = (first / PROFILE).resolve()
    _steady_file(first).unlink()
    result = bake.run(_options(first))
    assert not result.steady and result.tree == gen and rendered == [] and result.rewritten == 0
    assert bake.run(_options(first)).steady


def _edit_bundle_byte(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One byte of the token's secret, the file's length kept: another valid token."""
    token = bundle(out, PROFILE) / "token"
    text = bytearray(token.read_bytes())
    at = len(text.rstrip(b"\n")) - 1
    text[at] = ord("y") if text[at] == ord("x") else ord("x")
    token.write_bytes(bytes(text))


def _chmod_bundle_file(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (bundle(out, PROFILE) / "token").chmod(0o640)


def _source_date_epoch(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")


def _new_code(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(incremental, "tool_digest", lambda: "another version")


INPUT_CHANGES: dict[str, tuple[tuple[str, ...], dict[str, Any], Any]] = {
    # name: (--set, BakeOptions fields, what is done to the inputs before the re-bake)
    "a profile value": (("nodes[3].labels={site: b}",), {}, None),
    "the base URL": ((), {"base_url": "http://10.77.0.1:8081/"}, None),
    "a byte of the bundle": ((), {}, _edit_bundle_byte),
    "a bundle file's mode": ((), {}, _chmod_bundle_file),
    "SOURCE_DATE_EPOCH": ((), {}, _source_date_epoch),
    "code or templates": ((), {}, _new_code),
}


@pytest.mark.parametrize("change", list(INPUT_CHANGES))
def test_any_input_change_bakes_in_full(
    first: Path, tmp_path: Path, change: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The re-bake is not kept on the record, and its tree is the one a bake from scratch makes."""
    sets, kw, edit = INPUT_CHANGES[change]
    assert bake.run(_options(first)).steady
    if edit is not None:
        edit(first, monkeypatch)
    result = bake.run(_options(first, *sets, **kw))
    assert not result.steady
    if edit is _chmod_bundle_file:
        assert result.bundle_written  # the bundle put back as it must be
    _same_as_from_scratch(first, tmp_path, *sets, **kw)
    assert bake.run(_options(first, *sets, **kw)).steady  # and recorded again


def test_an_edited_output_file_bakes_in_full(first: Path, rendered: list[str]) -> None:
    gen = (first / PROFILE).resolve()
    before = tree_digest(gen)
    user_data = gen / "nodes" / "worker-1" / "user-data"
    user_data.chmod(0o600)
    user_data.write_bytes(user_data.read_bytes() + b"# edited\n")
    result = bake.run(_options(first))
    assert not result.steady and rendered == ["worker-1"]
    assert tree_digest((first / PROFILE).resolve()) == before


def test_a_tree_of_another_bake_is_not_kept(first: Path, rendered: list[str]) -> None:
    """bake --only made a new generation: the record names the one before it."""
    bake.run(_options(first, only=("worker-2",)))
    result = bake.run(_options(first))
    assert not result.steady
    assert bake.run(_options(first)).steady


def test_the_record_holds_until_a_certificate_is_due(first: Path, rendered: list[str]) -> None:
    """Within its span a bake in full would change nothing; at its end a certificate is re-issued, and
    before its start (a certificate not valid yet) too: the span is neither too long nor too short."""
    doc = json.loads(_steady_file(first).read_bytes())
    start, until = (datetime.fromisoformat(doc[k]) for k in ("from", "until"))
    second = timedelta(seconds=1)
    last = bake.run(_options(first, now=until - second))
    assert last.steady
    _steady_file(first).unlink()
    full = bake.run(_options(first, now=until - second))
    assert not full.steady and full.changes == [] and full.rewritten == 0
    assert bake.run(_options(first, now=start)).steady
    at_end = bake.run(_options(first, now=until))
    assert not at_end.steady
    assert bake.run(_options(first, now=until + second)).changes  # due now: re-issued
    early = _options(first, now=start - second)
    assert not bake.run(early).steady


def test_the_span_is_the_calendars(first: Path) -> None:
    """From the latest NotBefore of the bundle's certificates to the first one due, read with openssl and
    judged by the windows the README gives: the last third of a join credential's lifetime, at most
    30 days; cluster.certificateRenewal.before (720h) for the rest."""
    import subprocess

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    starts, dues = [], []
    for crt in sorted(bundle(first, PROFILE).rglob("*.crt")):
        out = subprocess.run(
            [openssl, "x509", "-noout", "-startdate", "-enddate", "-in", str(crt)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        dates = dict(line.split("=", 1) for line in out.splitlines())
        begin, end = (
            datetime.strptime(dates[k], "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)
            for k in ("notBefore", "notAfter")
        )
        join = crt.name == "join.crt"
        window = min(timedelta(days=30), (end - begin) / 3) if join else timedelta(hours=720)
        starts.append(begin)
        dues.append(end - window)
    assert len(starts) > 20
    doc = json.loads(_steady_file(first).read_bytes())
    assert datetime.fromisoformat(doc["from"]) == max(starts)
    assert datetime.fromisoformat(doc["until"]) == min(dues)


@pytest.mark.parametrize("damage", ["not JSON", "a time without its zone", "a field missing"])
def test_a_damaged_record_bakes_in_full(first: Path, rendered: list[str], damage: str) -> None:
    record = _steady_file(first)
    doc = json.loads(record.read_bytes())
    if damage == "not JSON":
        record.write_bytes(b"\xff{")
    elif damage == "a time without its zone":
        record.write_text(json.dumps({**doc, "from": doc["from"].removesuffix("+00:00")}))
    else:
        record.write_text(json.dumps({k: v for k, v in doc.items() if k != "warnings"}))
    result = bake.run(_options(first))
    assert not result.steady and rendered == [] and result.rewritten == 0
    assert json.loads(record.read_bytes()) == doc  # recorded again
