"""The shared first-boot program ships as one archive (builder.node.archive): the same bytes from two
bakes in separate processes, unpacked by GNU tar (the node's own runcmd entry) into exactly the files
the node had before as separate write_files entries, its scripts without their full-line comments
and parsed by bash exactly as the commented templates are."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder.files import NodeFile, secret
from builder.node import archive, bootstrap

from .helpers import (
    FIRST_BOOT_ARCHIVE,
    KEY_PACK,
    KEY_PACK_PROGRAM,
    REPO,
    bake,
    disk_files,
    write_file_content,
)
from .peers import program

TEMPLATES = REPO / "templates" / "bootstrap"
UNITS = "/etc/systemd/system/"
PHASES = ("prep", "packages", "runtime", "wait", "kubeadm", "cni")

# What main shipped as separate write_files entries before the archive (path -> mode), per node kind;
# each script's template in templates/bootstrap/.
SCRIPTS = {
    "/usr/local/sbin/bake-bootstrap": ("0755", "bootstrap.sh"),
    "/usr/local/lib/bake/bootstrap/lib.sh": ("0644", "lib.sh"),
    **{f"/usr/local/lib/bake/bootstrap/{p}.sh": ("0755", f"{p}.sh") for p in PHASES},
}
RENEWAL = {"/usr/local/sbin/bake-renew-certs": ("0755", "renew-certs.sh")}
REPORT = {"/usr/local/lib/bake/bootstrap/report.sh": ("0755", "report.sh")}
KEYPACK = {KEY_PACK_PROGRAM: ("0755", "")}
"""A control plane's key pack program (RSA keys, the default): builder/node/keypack.py as it is."""
BOOT_UNITS = [f"{UNITS}bake-bootstrap.service", *(f"{UNITS}bake-bootstrap-{p}.service" for p in PHASES)]
RENEWAL_UNITS = [f"{UNITS}bake-renew-certs.service", f"{UNITS}bake-renew-certs.timer"]
REPORT_URL = "cluster.seed.reportUrl=http://10.77.0.1:8080"


def _without_comments(text: str, source: str) -> str:
    """The test's own reading of the rule: drop lines whose first non-blank character is '#', but the
    first (the shebang); the scripts have no here-document (checked)."""
    lines = text.splitlines(keepends=True)
    assert not any(re.search(r"(?<!<)<<(?!<)", line) for line in lines), source
    header = f"# bake: comments stripped; the commented source is templates/bootstrap/{source} in the bake "
    header += "package\n"
    return "".join([lines[0], header, *(x for x in lines[1:] if not x.lstrip().startswith("#"))])


def _doc(tree: Path, node: str) -> dict[str, Any]:
    doc = yaml.safe_load((tree / "nodes" / node / "user-data").read_bytes())
    assert isinstance(doc, dict)
    return doc


def _archive_entry(doc: dict[str, Any]) -> dict[str, Any]:
    (entry,) = [e for e in doc["write_files"] if e["path"] == FIRST_BOOT_ARCHIVE]
    return entry


@pytest.fixture(scope="module")
def baked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """ha-stacked with a report URL, baked twice by separate processes (different hash seeds)."""
    trees = []
    for seed in ("1", "2"):
        out = tmp_path_factory.mktemp(f"bake{seed}")
        proc = bake("--profile", "ha-stacked", "--set", REPORT_URL, "--quiet", out=out,
                    env={"PYTHONHASHSEED": seed})  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        trees.append(out / "ha-stacked")
    return trees[0], trees[1]


def test_archive_is_byte_identical_across_bakes_and_nodes(baked: tuple[Path, Path]) -> None:
    """Two bakes (own processes, own bundles) give the same archive bytes; every worker carries the
    same one; its gzip has no name, mtime 0 and a fixed OS byte; its tar fixed owners and times."""
    first, second = baked
    for node in ("cp-1", "cp-2", "worker-1"):
        assert _archive_entry(_doc(first, node)) == _archive_entry(_doc(second, node)), node
    workers = {json.dumps(_archive_entry(_doc(first, n)), sort_keys=True) for n in ("worker-1", "worker-2")}
    assert len(workers) == 1
    packed = base64.b64decode(_archive_entry(_doc(first, "worker-1"))["content"], validate=True)
    assert packed[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # RFC 1952: no FNAME, MTIME 0, OS 255
    proc = subprocess.run([program("tar"), "--list", "--verbose", "--numeric-owner", "--full-time"],
                          input=write_file_content(_archive_entry(_doc(first, "worker-1"))),
                          capture_output=True, check=True)  # fmt: skip
    lines = proc.stdout.decode().splitlines()
    assert lines and all(" 0/0 " in x and " 1970-01-01 00:00:00 " in x and x.startswith("-") for x in lines)
    names = [x.rsplit(" ", 1)[1] for x in lines]
    assert names == sorted(names)


def _unpack_as_the_node_does(doc: dict[str, Any], root: Path) -> None:
    """cloud-init writes the entry (gz+b64 decoded by Python here), then runcmd's first entry runs:
    the same argv, with the node's / and the archive's place moved under `root`."""
    command = list(doc["runcmd"][0])
    assert command[0] == "tar"
    file_at, dir_at = command.index("--file") + 1, command.index("--directory") + 1
    assert (command[file_at], command[dir_at]) == (FIRST_BOOT_ARCHIVE, "/")
    packed = root.parent / "first-boot.tar"
    packed.write_bytes(write_file_content(_archive_entry(doc)))
    command[file_at], command[dir_at] = str(packed), str(root)
    if os.geteuid() != 0:
        command.remove("--same-owner")
    root.mkdir()
    subprocess.run([program("tar"), *command[1:]], check=True, capture_output=True)


def _tree_files(root: Path) -> dict[str, tuple[bytes, str, int]]:
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if stat.S_ISDIR(st.st_mode):
            assert st.st_mode & 0o777 == 0o755, path  # tar's own parents, as write_files created them
            continue
        assert stat.S_ISREG(st.st_mode), path
        mode = f"{st.st_mode & 0o7777:04o}"
        found["/" + str(path.relative_to(root))] = (path.read_bytes(), mode, st.st_uid)
    return found


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ("worker-1", {**SCRIPTS, **REPORT}),
        ("cp-1", {**SCRIPTS, **REPORT, **RENEWAL, **KEYPACK}),
    ],
)
def test_unpacking_gives_the_files_the_node_had(
    baked: tuple[Path, Path], tmp_path: Path, node: str, expected: dict[str, tuple[str, str]]
) -> None:
    tree = baked[0]
    doc = _doc(tree, node)
    _unpack_as_the_node_does(doc, tmp_path / "root")
    unpacked = _tree_files(tmp_path / "root")
    units = BOOT_UNITS + (RENEWAL_UNITS if node == "cp-1" else [])
    assert set(unpacked) == set(expected) | set(units)
    for path, (mode, source) in expected.items():
        content, got_mode, uid = unpacked[path]
        assert got_mode == mode, path
        assert uid == 0 or os.geteuid() != 0, path
        if not source:
            assert content == (REPO / "builder/node/keypack.py").read_bytes(), path
            continue
        assert content.decode() == _without_comments((TEMPLATES / source).read_text(), source), path
    # the units, as the renderer writes them (unchanged by the archive)
    report = True
    texts = {bootstrap.layout.UNIT_PATH: bootstrap.units.unit_text(report)}
    texts |= {bootstrap.units.phase_unit_path(p): bootstrap.units.phase_unit_text(p, report) for p in PHASES}
    for path in units:
        content, got_mode, _ = unpacked[path]
        assert got_mode == "0644", path
        if path in texts:  # the renewal's units: by their place and mode (tests/test_renewal.py)
            assert content.decode() == texts[path], path
    # together with the other write_files: exactly the manifest's file set, each file once
    plain = {e["path"] for e in doc["write_files"]} - {FIRST_BOOT_ARCHIVE, KEY_PACK}
    assert not plain & set(unpacked)
    plain |= set(disk_files(doc)) - set(unpacked)  # and the key pack's files
    manifest = json.loads((tree / "manifest.json").read_text())
    (entry,) = [n for n in manifest["nodes"] if n["name"] == node]
    listed = {f["path"]: f for f in entry["files"]}
    assert set(listed) == plain | set(unpacked)
    for path, (content, mode, _) in disk_files(doc).items():
        assert listed[path]["mode"] == mode, path
        assert listed[path]["sha256"] == hashlib.sha256(content).hexdigest(), path
    # secret and node-specific files stay plain entries with their modes
    assert all(not listed[p]["secret"] for p in unpacked)
    assert {e["path"]: e["permissions"] for e in doc["write_files"]}[bootstrap.layout.ENV_PATH] == "0644"


def test_runcmd_unpacks_before_systemd_reads_the_units(baked: tuple[Path, Path]) -> None:
    for node in ("cp-1", "worker-2"):
        runcmd = _doc(baked[0], node)["runcmd"]
        assert runcmd[0] == ["tar", "--extract", "--file", FIRST_BOOT_ARCHIVE, "--directory", "/",
                             "--same-owner", "--same-permissions", "--touch"]  # fmt: skip
        assert runcmd[1] == ["systemctl", "daemon-reload"]
        assert ["systemctl", "start", "--no-block", "bake-bootstrap.service"] in runcmd[2:]


# --------------------------------------------------------------------------------------------------
# comments


def _declared(script: Path) -> str:
    """bash's own normalized text of the script's code, comments gone (`declare -f` of a function
    whose body is the script): two scripts with the same text differ in comments and layout only."""
    wrapper = 'eval "__script() {\n$(cat "$1")\n}" && declare -f __script'
    return subprocess.run([program("bash"), "-c", wrapper, "_", str(script)], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip


def test_stripped_scripts_parse_as_their_commented_sources(tmp_path: Path) -> None:
    """bash -n passes on every shipped script, and bash reads the same code in it as in its template."""
    sources = sorted(p.name for p in TEMPLATES.glob("*.sh"))
    assert sorted(archive.SCRIPT_SOURCES.values()) == sources
    for path, source in archive.SCRIPT_SOURCES.items():
        template = TEMPLATES / source
        shipped = tmp_path / source
        shipped.write_text(archive.strip_comments(template.read_text(), source))
        subprocess.run([program("bash"), "-n", str(shipped)], check=True)
        text = shipped.read_text()
        assert text.startswith("#!/bin/bash\n# bake: comments stripped; the commented source is "
                               f"templates/bootstrap/{source} in the bake package\n"), path  # fmt: skip
        assert not [x for x in text.splitlines()[2:] if x.lstrip().startswith("#")], path
        assert len(text) < len(template.read_text()), path
        assert _declared(shipped) == _declared(template), path
        assert "__script" in _declared(template)


def test_declared_form_sees_a_change_of_code(tmp_path: Path) -> None:
    """The proof above can fail: a dropped line of code (not a comment) changes bash's reading."""
    template = (TEMPLATES / "wait.sh").read_text()
    broken = tmp_path / "broken.sh"
    lines = archive.strip_comments(template, "wait.sh").splitlines(keepends=True)
    broken.write_text("".join(lines[:-3] + lines[-2:]))
    assert _declared(broken) != _declared(TEMPLATES / "wait.sh")


def test_here_documents_keep_their_lines() -> None:
    script = (
        "#!/bin/bash\n"
        "# a comment\n"
        "  # an indented one\n"
        "cat <<EOF >/tmp/x\n"
        "# kept: inside a here-document\n"
        "EOF\n"
        "cat <<-'END'\n"
        "\t# kept too\n"
        "\tEND\n"
        'read -r a <<<"$b"  # a trailing comment stays\n'
        "echo $((1 << 2))\n"
        "# gone\n"
    )
    assert archive.strip_comments(script, "x.sh") == (
        "#!/bin/bash\n"
        "# bake: comments stripped; the commented source is templates/bootstrap/x.sh in the bake package\n"
        "cat <<EOF >/tmp/x\n"
        "# kept: inside a here-document\n"
        "EOF\n"
        "cat <<-'END'\n"
        "\t# kept too\n"
        "\tEND\n"
        'read -r a <<<"$b"  # a trailing comment stays\n'
        "echo $((1 << 2))\n"
    )
    with pytest.raises(ValueError, match="here-document EOF not terminated"):
        archive.strip_comments("#!/bin/bash\ncat <<EOF\n# x\n", "y.sh")
    with pytest.raises(ValueError, match="no #! line"):
        archive.strip_comments("echo\n", "z.sh")


def test_only_public_root_files_go_in() -> None:
    assert archive.in_archive(NodeFile(bootstrap.layout.SCRIPT_PATH, b"#!/bin/bash\n", 0o755))
    assert not archive.in_archive(secret(bootstrap.layout.SCRIPT_PATH, b"#!/bin/bash\n"))
    assert not archive.in_archive(NodeFile(bootstrap.layout.ENV_PATH, b"A=1\n"))
    assert not archive.in_archive(NodeFile("/etc/systemd/system/kubelet.service.d/10-bake.conf", b""))
    assert not archive.in_archive(NodeFile("/etc/systemd/system/bake-x.service.d/a.conf", b""))
    assert archive.in_archive(NodeFile("/etc/systemd/system/bake-join-token.timer", b""))
    with pytest.raises(ValueError, match="only public root-owned files"):
        archive.tar_bytes([secret("/etc/x", b"k")])
    packed = archive.tar_bytes([NodeFile("/b/y", b"2"), NodeFile("/a/x", b"1", 0o755)])
    with tarfile.open(fileobj=io.BytesIO(packed)) as tar:
        assert tar.getnames() == ["a/x", "b/y"]
