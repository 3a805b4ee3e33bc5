"""builder.emit.outputs: generations swapped in atomically, unchanged files hard-linked, exact modes, one
bake."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.emit.outputs import STATE_DIR, OutputTree
from builder.errors import OutputError
from builder.files import walk_files

CLUSTER = "demo"
REPO = Path(__file__).resolve().parent.parent


def bake(root: Path, files: dict[str, tuple[bytes, int]], cluster: str = CLUSTER) -> tuple[OutputTree, Path]:
    with OutputTree(root, cluster) as tree:
        for rel, (data, mode) in files.items():
            tree.write(rel, data, mode)
        final = tree.commit()
    return tree, final


def tree_files(link: Path) -> dict[str, bytes]:
    return {str(p.relative_to(link)): p.read_bytes() for p in sorted(link.rglob("*")) if p.is_file()}


def state(root: Path, cluster: str = CLUSTER) -> Path:
    return root / STATE_DIR / cluster


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in state(root).iterdir() if p.name.startswith(("tmp-", "link-")))


def generations(root: Path) -> list[Path]:
    return sorted(state(root).glob("gen-*"))


@pytest.fixture(params=[0o000, 0o077, 0o022], ids=["umask0", "umask077", "umask022"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """umask 0 catches modes that are too open, 077 modes that rely on the umask being lax."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


FIRST = {
    "manifest.json": (b'{"a": 1}\n', 0o600),
    "nodes/cp-1/seed.iso": (b"ISO" * 100, 0o644),
    "nodes/cp-1/user-data": (b"#cloud-config\n", 0o600),
    "secrets/pki/ca.key": (b"KEY", 0o600),
}


def test_write_commit_and_symlink(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    tree, final = bake(root, FIRST)
    link = root / CLUSTER
    assert link.is_symlink()
    assert not os.path.isabs(os.readlink(link))  # relative: the outputs dir can be moved
    assert link.resolve() == final.resolve()
    assert final.parent == state(root) and final.name.startswith("gen-")
    assert tree_files(link) == {rel: data for rel, (data, _) in FIRST.items()}
    assert leftovers(root) == []
    assert tree.rewritten == 4 and tree.linked == 0
    assert set(tree.written) == set(FIRST)
    assert len(tree.written["manifest.json"]) == 64


def test_exception_leaves_previous_tree_untouched(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    _, first = bake(root, FIRST)
    target = os.readlink(root / CLUSTER)
    before = tree_files(root / CLUSTER)
    with pytest.raises(RuntimeError, match="boom"), OutputTree(root, CLUSTER) as tree:
        tree.write("manifest.json", b"changed", 0o600)
        tree.write("new/file", b"x", 0o600)
        assert tree.work is not None and tree.work.exists()
        raise RuntimeError("boom")
    assert os.readlink(root / CLUSTER) == target
    assert tree_files(root / CLUSTER) == before
    assert generations(root) == [first]
    assert leftovers(root) == []


def test_leaving_without_commit_discards_the_generation(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    _, first = bake(root, FIRST)
    with OutputTree(root, CLUSTER) as tree:
        tree.write("manifest.json", b"changed", 0o600)
    assert tree_files(root / CLUSTER)["manifest.json"] == FIRST["manifest.json"][0]
    assert generations(root) == [first] and leftovers(root) == []


def test_first_bake_failing_leaves_no_link(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    with pytest.raises(ValueError), OutputTree(root, CLUSTER) as tree:
        tree.write("a", b"a", 0o600)
        raise ValueError
    assert not (root / CLUSTER).exists() and not (root / CLUSTER).is_symlink()
    assert generations(root) == [] and leftovers(root) == []


def test_unchanged_files_are_hard_linked(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    _, first = bake(root, FIRST)
    inode = {rel: (first / rel).stat().st_ino for rel in FIRST}
    second = dict(FIRST)
    second["manifest.json"] = (b'{"a": 2}\n', 0o600)  # same size, other bytes
    second["nodes/cp-1/user-data"] = (FIRST["nodes/cp-1/user-data"][0], 0o644)  # same bytes, other mode
    second["nodes/cp-2/seed.iso"] = (b"new", 0o644)
    tree, final = bake(root, second)
    assert (tree.linked, tree.rewritten) == (2, 3)
    for rel in ("nodes/cp-1/seed.iso", "secrets/pki/ca.key"):
        assert (final / rel).stat().st_ino == inode[rel], rel
    for rel in ("manifest.json", "nodes/cp-1/user-data"):
        assert (final / rel).stat().st_ino != inode[rel], rel
    assert tree_files(root / CLUSTER) == {rel: data for rel, (data, _) in second.items()}
    assert stat.S_IMODE((final / "nodes/cp-1/user-data").stat().st_mode) == 0o644
    assert generations(root) == [final]  # the old generation is gone, its linked files live on
    assert (final / "secrets/pki/ca.key").stat().st_nlink == 1


def test_link_previous_carries_a_file_over(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    _, first = bake(root, FIRST)
    ino = (first / "nodes/cp-1/seed.iso").stat().st_ino
    with OutputTree(root, CLUSTER) as tree:
        assert tree.link_previous("nodes/cp-1/seed.iso")
        assert not tree.link_previous("nodes/cp-9/seed.iso")
        assert tree.previous_bytes("manifest.json") == FIRST["manifest.json"][0]
        assert tree.previous_bytes("nope") is None
        final = tree.commit()
    assert (final / "nodes/cp-1/seed.iso").stat().st_ino == ino
    assert tree.linked == 1


def test_modes_are_exact_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    root = tmp_path / "outputs"
    modes = {"a": 0o600, "b/c": 0o644, "b/d/e": 0o755, "f": 0o640, "g/h/i/j": 0o400}
    _, final = bake(root, {rel: (rel.encode(), mode) for rel, mode in modes.items()})
    for rel, mode in modes.items():
        assert stat.S_IMODE((final / rel).stat().st_mode) == mode, rel
    dirs = [state(root).parent, state(root), final, *(p for p in final.rglob("*") if p.is_dir())]
    assert len(dirs) == 8
    for d in dirs:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    lock = state(root) / "lock"
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    # a second generation with hard links keeps the modes too
    _, again = bake(root, {rel: (rel.encode(), mode) for rel, mode in modes.items()})
    for rel, mode in modes.items():
        assert stat.S_IMODE((again / rel).stat().st_mode) == mode, rel
    assert stat.S_IMODE(again.stat().st_mode) == 0o700


@pytest.mark.parametrize("rel", ["/etc/passwd", "../escape", "a/../../escape", "nodes/../../../x"])
def test_writing_outside_the_tree_is_refused(tmp_path: Path, rel: str) -> None:
    root = tmp_path / "outputs"
    with OutputTree(root, CLUSTER) as tree:
        with pytest.raises(OutputError, match="outside the output tree"):
            tree.write(rel, b"x", 0o600)
        tree.write("ok", b"ok", 0o600)
        tree.commit()
    assert not (tmp_path / "escape").exists() and not (tmp_path / "x").exists()
    assert tree_files(root / CLUSTER) == {"ok": b"ok"}


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_non_symlink_at_the_cluster_path_is_refused(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "outputs"
    root.mkdir()
    occupant = root / CLUSTER
    if kind == "dir":
        occupant.mkdir()
        (occupant / "precious").write_text("mine")
    else:
        occupant.write_text("mine")
    with pytest.raises(OutputError) as info, OutputTree(root, CLUSTER):
        pytest.fail("entered")
    message = str(info.value)
    assert str(occupant) in message and "not a bake output link" in message and "move it away" in message
    if kind == "dir":
        assert (occupant / "precious").read_text() == "mine" and not occupant.is_symlink()
    else:
        assert occupant.read_text() == "mine"


def test_dangling_link_is_replaced(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    root.mkdir()
    (root / CLUSTER).symlink_to(f"{STATE_DIR}/{CLUSTER}/gen-gone")
    with OutputTree(root, CLUSTER) as tree:
        assert tree.previous is None
        tree.write("a", b"a", 0o600)
        tree.commit()
    assert tree_files(root / CLUSTER) == {"a": b"a"}


def test_clusters_are_independent(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    bake(root, {"a": (b"one", 0o600)}, cluster="one")
    bake(root, {"a": (b"two", 0o600)}, cluster="two")
    assert (root / "one" / "a").read_bytes() == b"one"
    assert (root / "two" / "a").read_bytes() == b"two"


HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from builder.emit.outputs import OutputTree
    with OutputTree(Path(sys.argv[1]), sys.argv[2]) as tree:
        tree.write("from-holder", b"x", 0o600)
        print(tree.work, flush=True)
        sys.stdin.readline()
    """
)


def test_concurrent_bake_of_the_same_cluster_fails(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    bake(root, FIRST)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root), CLUSTER],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        work = Path(holder.stdout.readline().strip())
        assert work.is_dir(), "holder did not start"
        with pytest.raises(OutputError) as info, OutputTree(root, CLUSTER):
            pytest.fail("entered while another bake holds the lock")
        message = str(info.value)
        assert "another bake" in message and f"pid {holder.pid}" in message
        assert work.is_dir()  # the failed attempt did not clean up the running bake's work
        assert (work / "from-holder").is_file()
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=30) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    # the lock is free again, and the holder's uncommitted work changed nothing
    tree, _ = bake(root, FIRST)
    assert tree.linked == len(FIRST)
    assert leftovers(root) == []


def test_other_cluster_is_not_blocked_by_a_running_bake(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root), "one"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert Path(holder.stdout.readline().strip()).is_dir()
        bake(root, {"a": (b"two", 0o600)}, cluster="two")
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=30) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert (root / "two" / "a").read_bytes() == b"two"


def test_work_of_a_killed_bake_is_cleaned_up_by_the_next(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    bake(root, FIRST)
    crash = HOLDER.replace("sys.stdin.readline()", "import os; os._exit(9)")
    done = subprocess.run(
        [sys.executable, "-c", crash, str(root), CLUSTER],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 9
    assert Path(done.stdout.strip()).is_dir()  # the killed bake left its work behind ...
    assert tree_files(root / CLUSTER) == {rel: data for rel, (data, _) in FIRST.items()}
    _, final = bake(root, FIRST)
    assert not Path(done.stdout.strip()).exists()  # ... and the next bake removed it
    assert leftovers(root) == [] and generations(root) == [final]


def test_walk_files_lists_what_os_walk_lists(tmp_path: Path) -> None:
    """Every non-directory below the root by relative path, links to directories neither listed nor
    entered: what os.walk gives, in one pass that keeps each entry's status at hand."""
    root = tmp_path / "tree"
    (root / "a" / "b").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "top").write_text("1")
    (root / "a" / "b" / "deep").write_text("2")
    (root / "a" / "file-link").symlink_to(root / "top")
    (root / "a" / "dir-link").symlink_to(root / "a" / "b", target_is_directory=True)
    (root / "a" / "dangling").symlink_to(root / "nowhere")
    expected = {
        os.path.relpath(os.path.join(top, name), root) for top, _, names in os.walk(root) for name in names
    }
    listed = dict(walk_files(str(root)))
    assert set(listed) == expected == {"top", "a/b/deep", "a/file-link", "a/dangling"}
    assert all(entry.path == str(root / rel) for rel, entry in listed.items())
    assert dict(walk_files(str(root / "missing"))) == {}
