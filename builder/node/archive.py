"""The shared first-boot program in one archive: bake's scripts and bake-* units, shipped as one
write_files entry and unpacked by the first runcmd entry.

Clouds cap user-data (packaging.CAPS: AWS 16,384 bytes, Azure 65,535): the first-boot scripts, the same
bytes on every node, were two thirds of a worker's. One tar of them (fixed mtime, uid, gid and owner
names, sorted names, each file's mode), in deterministic gzip and base64 (cloud-init's `gz+b64`), costs a
third of their plain form; the same inputs give the same bytes, so re-bakes stay byte-identical.
`in_archive` is the one rule of what goes in; the renderer, `bake check` and the tests all read it.

What runs before the archive is unpacked: cloud-init's init stage writes every write_files entry (the
archive among them, as a plain tar: cloud-init decodes gz+b64 itself, so the node needs no gzip), the
config stage, then the final stage's runcmd, whose first entry unpacks it, before `systemctl
daemon-reload` and the start of bake-bootstrap.service. Nothing of the program runs earlier: its units
are neither enabled nor started before runcmd. A reboot after runcmd finds the files on disk (and the
archive, kept at ARCHIVE_PATH); one before the final stage ran runs runcmd at the next boot, as before.

Node-specific and secret files (env files, keys, kubeconfigs, configuration) stay plain write_files
entries with their own modes and owners, but RSA keys and the kubeconfigs holding them, which go in the
node's key pack (builder.node.compact_keys). The scripts in the archive are shipped without their full-line
comments (`strip_comments`), each naming its commented source in the package in a header line.
"""

from __future__ import annotations

import base64
import io
import re
import struct
import tarfile
import zlib
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from ..files import NodeFile
from . import bootstrap, compact_keys, renewal

ARCHIVE_PATH = "/usr/local/lib/bake/first-boot.tar"
"""Where cloud-init writes the archive (a plain tar: gz+b64 is decoded by cloud-init); kept after
unpacking. Not under /var/lib/bake, whose mode the scripts set themselves."""
MTIME = 0
"""Every member's mtime in the archive; unpacked with --touch, so the files get the time of unpacking,
as write_files gives them."""
OWNER = "root:root"

EXTRACT_COMMAND = (
    "tar", "--extract", "--file", ARCHIVE_PATH, "--directory", "/",
    "--same-owner", "--same-permissions", "--touch",
)  # fmt: skip
"""runcmd's first entry. No directory members: tar creates missing parents as write_files did (0755
under cloud-init's umask) and never changes the mode of an existing directory such as /usr/local/sbin."""

UNIT_DIR = "/etc/systemd/system/"

SCRIPT_SOURCES: dict[str, str] = {
    bootstrap.layout.SCRIPT_PATH: "bootstrap.sh",
    renewal.SCRIPT_PATH: renewal.SCRIPT_NAME,
    bootstrap.layout.REPORT_SCRIPT_PATH: "report.sh",
    f"{bootstrap.layout.LIB_DIR}/lib.sh": "lib.sh",
    **{bootstrap.layout.phase_script_path(p): f"{p}.sh" for p in bootstrap.layout.PHASES},
}
"""Every script bake ships, by its path on the node -> its file in templates/bootstrap/."""


def _bake_unit(path: str) -> bool:
    name = path.removeprefix(UNIT_DIR)
    return path.startswith(UNIT_DIR) and "/" not in name and name.startswith("bake-")


def in_archive(f: NodeFile) -> bool:
    """Whether a node file goes into the archive: bake's scripts (the key pack's unpacker among them) and
    its own units (bake-*.service, bake-*.timer; no drop-in), none of them secret. Everything else stays
    a write_files entry."""
    program = f.path in SCRIPT_SOURCES or f.path == compact_keys.SCRIPT_PATH or _bake_unit(f.path)
    return not f.secret and f.owner == OWNER and program


def split(files: Sequence[NodeFile]) -> tuple[list[NodeFile], list[NodeFile]]:
    """(the archive's files, the other write_files), each in the given order."""
    return [f for f in files if in_archive(f)], [f for f in files if not in_archive(f)]


# --------------------------------------------------------------------------------------------------
# comments


HEADER = "# bake: comments stripped; the commented source is templates/bootstrap/{} in the bake package\n"
_HEREDOC = re.compile(r"(?<!<)<<(?!<)(-?)\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")


@lru_cache(maxsize=64)
def strip_comments(text: str, source: str) -> str:
    """The script without its full-line comments (first non-blank character `#`): never the shebang,
    never a line inside a here-document; a header line after the shebang names the commented source.
    Blank lines and trailing comments stay. tests/test_archive.py proves bash parses both forms alike."""
    lines = text.splitlines(keepends=True)
    if not lines or not lines[0].startswith("#!"):
        raise ValueError(f"{source}: not a script (no #! line)")
    out = [lines[0], HEADER.format(source)]
    ends: list[tuple[str, bool]] = []  # pending here-document terminators (word, <<- strips tabs)
    for line in lines[1:]:
        if ends:
            out.append(line)
            word, tabs = ends[0]
            body = line.rstrip("\n")
            if (body.lstrip("\t") if tabs else body) == word:
                ends.pop(0)
            continue
        if line.lstrip().startswith("#"):
            continue
        out.append(line)
        ends += [(m.group(3), m.group(1) == "-") for m in _HEREDOC.finditer(line)]
    if ends:
        raise ValueError(f"{source}: here-document {ends[0][0]} not terminated")
    return "".join(out)


def shipped(files: Iterable[NodeFile]) -> list[NodeFile]:
    """The node's files as they land on disk: the archive's scripts without comments, all else as is."""
    out = []
    for f in files:
        source = SCRIPT_SOURCES.get(f.path)
        if source is not None and in_archive(f):
            stripped = strip_comments(f.content.decode(), source).encode()
            f = NodeFile(f.path, stripped, f.mode, f.owner, f.sensitivity)
        out.append(f)
    return out


# --------------------------------------------------------------------------------------------------
# bytes


GZIP_LEVEL = 9
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
"""RFC 1952: deflate, no flags (no file name), MTIME 0, XFL 2 (level 9), OS 255 (unknown): Python's
gzip module writes the OS it runs on, which would make the bytes depend on the baking machine."""


def gzip_bytes(data: bytes, *, smallest: bool = False) -> bytes:
    """Deterministic gzip (level 9, mtime 0, no file name, a fixed OS byte): same input, same bytes.

    `smallest`: zopfli's deflate instead of zlib's, about 4 % smaller and a hundred times slower (a
    tenth of a second for the archive). Only the archive, packed once and shipped in every seed, takes
    it: it is most of a worker's user-data.gz, which AWS caps at 16,384 bytes."""
    if smallest:
        import zopfli.zopfli  # the zopfli version is pinned: its output is part of the seeds' bytes

        body: bytes = zopfli.zopfli.compress(data, numiterations=15)[2:-4]  # the zlib stream's raw deflate
    else:
        deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        body = deflate.compress(data) + deflate.flush()
    return GZIP_HEADER + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def tar_bytes(files: Iterable[NodeFile]) -> bytes:
    """A ustar archive of regular files only, sorted by path, relative names, uid / gid 0 and owner
    names root, mtime MTIME, each file's mode: nothing of the baking machine or the moment."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for f in sorted(files, key=lambda f: f.path):
            if f.owner != OWNER or f.secret:
                raise ValueError(f"{f.path}: only public root-owned files go into the archive")
            info = tarfile.TarInfo(f.path.lstrip("/"))
            info.size = len(f.content)
            info.mode = f.mode
            info.mtime = MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(f.content))
    return buf.getvalue()


@lru_cache(maxsize=16)
def _packed(files: tuple[NodeFile, ...]) -> str:
    """Cached by content: the archive is the same for every node of one kind (a thousand workers pack
    it once), and its deflate (zopfli's) would be most of a worker's rendering otherwise."""
    return base64.b64encode(gzip_bytes(tar_bytes(files), smallest=True)).decode("ascii")


def write_files_entry(files: Sequence[NodeFile]) -> dict[str, Any]:
    """The archive's write_files entry: the tar in gz+b64, public (nothing secret goes in)."""
    return {
        "path": ARCHIVE_PATH,
        "owner": OWNER,
        "permissions": "0644",
        "encoding": "gz+b64",
        "content": _packed(tuple(files)),
        "defer": False,
    }


def members(data: bytes) -> dict[str, tuple[bytes, str, str]]:
    """path -> (content, permissions, owner) of an archive as the node unpacks it (`bake check` reads
    it so); anything but regular files with clean relative names is refused (ValueError)."""
    out: dict[str, tuple[bytes, str, str]] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for info in tar:
                name = info.name
                if not info.isreg() or name.startswith("/") or ".." in name.split("/") or not name:
                    raise ValueError(f"{ARCHIVE_PATH}: member {name!r} is not a plain file")
                path = "/" + name
                if path in out:
                    raise ValueError(f"{ARCHIVE_PATH}: {path} twice")
                handle = tar.extractfile(info)
                assert handle is not None  # a regular file
                out[path] = (handle.read(), f"{info.mode & 0o7777:04o}", f"{info.uname}:{info.gname}")
    except tarfile.TarError as exc:
        raise ValueError(f"{ARCHIVE_PATH}: not a tar archive: {exc}") from None
    return out
