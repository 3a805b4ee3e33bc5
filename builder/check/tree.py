"""Checks of the output tree as a whole: SHA256SUMS, and the modes of its directories and of every file
that holds a secret."""

from __future__ import annotations

import stat
from pathlib import Path

from ..files import sha256_file
from .findings import Report
from .userdata import looks_secret, readable_forms


def check_checksums(tree: Path, report: Report) -> None:
    """Every file SHA256SUMS lists is there, inside the tree, with its digest."""
    sums = tree / "SHA256SUMS"
    if not sums.is_file():
        report.error("sums-missing", "SHA256SUMS", "missing")
        return
    bad = 0
    lines = sums.read_text().splitlines()
    for line in lines:
        digest, _, rel = line.partition("  ")
        path = tree / rel
        if ".." in Path(rel).parts or not path.is_file():
            report.error("sums-file-missing", rel, "listed in SHA256SUMS but missing")
            bad += 1
        elif sha256_file(path) != digest:
            report.error("sums-mismatch", rel, "content differs from SHA256SUMS")
            bad += 1
    if not bad:
        report.ok("SHA256SUMS", f"{len(lines)} files match")


def check_modes(tree: Path, report: Report, label: str = "") -> None:
    """Directories, seed ISOs and every file holding a secret in any of its readable forms are closed to
    group and others."""
    loose = 0
    for path in [tree, *tree.rglob("*")]:
        st = path.lstat()
        rel = label + str(path.relative_to(tree)) if path != tree else label.rstrip("/") or "."
        if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o077:
            report.error("mode-directory", rel, f"directory mode {st.st_mode & 0o777:04o}, expected 0700")
            loose += 1
        elif (
            stat.S_ISREG(st.st_mode)
            and st.st_mode & 0o077
            and (path.suffix == ".iso" or any(looks_secret(b) for b in readable_forms(path)))
        ):
            report.error(
                "mode-secret-file",
                rel,
                f"holds secrets but mode is {st.st_mode & 0o777:04o}, expected 0600",
            )
            loose += 1
    if not loose:
        report.ok(label.rstrip("/") or "modes", "directories 0700, secret-bearing files 0600")
