"""Seed ISOs: read back by pycdlib and by real peers (isoinfo, xorriso, blkid), and byte-identical."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pycdlib
import pytest

from builder.emit.iso import SeedIsoError, build_seed_iso, iso9660_name, read_seed_iso
from builder.errors import BakeError

from .peers import program

REPO = Path(__file__).resolve().parents[1]
EPOCH = 1_700_000_000  # 2023-11-14T22:13:20Z
SECTOR = 2048

USER_DATA = b"#cloud-config\nhostname: node-0\n" + b"".join(
    b"# padding line %05d to make an ~8 KiB user-data file\n" % i for i in range(150)
)
SEED = {
    "meta-data": b"instance-id: node-0\nlocal-hostname: node-0\n",
    "user-data": USER_DATA,
    "network-config": b"version: 2\nethernets:\n  eth0:\n    dhcp4: true\n",
}

FILE_SETS = {
    "standard": SEED,
    "with-vendor-data": {**SEED, "vendor-data": b"#cloud-config\npackages: []\n"},
    "empty-file": {"meta-data": b"", "user-data": b"#cloud-config\n"},
    "all-empty": {"meta-data": b"", "user-data": b"", "network-config": b""},
    "300KiB": {"meta-data": b"instance-id: big\n", "user-data": bytes(range(256)) * 1200},
    "gzip": {
        "meta-data": b"instance-id: gz\n",
        "user-data": gzip.compress(USER_DATA * 4, mtime=0),
        "vendor-data": bytes(range(256)),
    },
}


def _tool(name: str) -> str:
    return program(name, {"isoinfo": "genisoimage", "blkid": "util-linux"}.get(name))


def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, check=True, capture_output=True, timeout=60)


@pytest.fixture(params=sorted(FILE_SETS), ids=sorted(FILE_SETS))
def seed_case(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[dict[str, bytes], Path]:
    files = FILE_SETS[request.param]
    iso = tmp_path / "seed.iso"
    iso.write_bytes(build_seed_iso(files, epoch=EPOCH))
    return files, iso


# --- read back with pycdlib -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FILE_SETS))
def test_read_back_equals_input(name: str) -> None:
    files = FILE_SETS[name]
    data = build_seed_iso(files, epoch=EPOCH)
    assert len(data) % SECTOR == 0
    assert read_seed_iso(data) == files


def test_read_back_from_path(tmp_path: Path) -> None:
    path = tmp_path / "seed.iso"
    path.write_bytes(build_seed_iso(SEED, epoch=EPOCH))
    assert read_seed_iso(path) == SEED


def test_iso9660_and_joliet_names() -> None:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(build_seed_iso(FILE_SETS["with-vendor-data"], epoch=EPOCH)))
    try:
        iso_names = {
            r.file_identifier().decode()
            for r in iso.list_children(iso_path="/")
            if not (r.is_dot() or r.is_dotdot())
        }
        joliet_names = {
            r.file_identifier().decode("utf-16-be")
            for r in iso.list_children(joliet_path="/")
            if not (r.is_dot() or r.is_dotdot())
        }
    finally:
        iso.close()
    assert iso_names == {"META_DAT.;1", "USER_DAT.;1", "NETWORK_.;1", "VENDOR_D.;1"}
    assert joliet_names == {"meta-data", "user-data", "network-config", "vendor-data"}


def test_iso9660_name() -> None:
    assert iso9660_name("user-data") == "/USER_DAT.;1"
    assert iso9660_name("meta-data") == "/META_DAT.;1"
    assert iso9660_name("network-config") == "/NETWORK_.;1"
    assert iso9660_name("a") == "/A.;1"


def test_read_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a readable ISO 9660 image"):
        read_seed_iso(b"\x00" * 40 * SECTOR)
    with pytest.raises(ValueError, match="not a readable"):
        read_seed_iso(b"not an iso")


def test_read_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        read_seed_iso(tmp_path / "nope.iso")


# --- real peers ------------------------------------------------------------------------------------


@pytest.mark.integration
def test_isoinfo_descriptor(seed_case: tuple[dict[str, bytes], Path]) -> None:
    isoinfo = _tool("isoinfo")
    _, iso = seed_case
    out = _run(isoinfo, "-d", "-i", str(iso)).stdout.decode()
    assert "Volume id: cidata\n" in out
    assert "Joliet with UCS level 3 found" in out
    assert "Rock Ridge signatures version 1 found" in out
    assert "Logical block size is: 2048" in out
    assert f"Volume size is: {iso.stat().st_size // SECTOR}\n" in out


@pytest.mark.integration
def test_isoinfo_lists_and_extracts(seed_case: tuple[dict[str, bytes], Path]) -> None:
    isoinfo = _tool("isoinfo")
    files, iso = seed_case
    expected = sorted("/" + name for name in files)
    for flag in ("-R", "-J"):
        listing = _run(isoinfo, flag, "-f", "-i", str(iso)).stdout.decode().split()
        assert sorted(listing) == expected, flag
        for name, content in files.items():
            got = _run(isoinfo, flag, "-i", str(iso), "-x", "/" + name).stdout
            assert got == content, (flag, name)
    plain = _run(isoinfo, "-f", "-i", str(iso)).stdout.decode().split()
    assert sorted(plain) == sorted(iso9660_name(n) for n in files)
    long_listing = _run(isoinfo, "-R", "-l", "-i", str(iso)).stdout.decode()
    for name, content in files.items():
        line = next(ln for ln in long_listing.splitlines() if ln.endswith(f" {name} "))
        assert line.startswith("-r--r--r--"), line
        assert f" {len(content)} " in line, line


@pytest.mark.integration
def test_xorriso_lists_and_extracts(seed_case: tuple[dict[str, bytes], Path], tmp_path: Path) -> None:
    xorriso = _tool("xorriso")
    files, iso = seed_case
    found = _run(xorriso, "-indev", str(iso), "-find", "/").stdout.decode().split()
    assert sorted(found) == sorted(["'/'", *(f"'/{name}'" for name in files)])
    dest = tmp_path / "extracted"
    _run(xorriso, "-osirrox", "on", "-indev", str(iso), "-extract", "/", str(dest))
    assert sorted(p.name for p in dest.iterdir()) == sorted(files)
    for name, content in files.items():
        assert (dest / name).read_bytes() == content, name


@pytest.mark.integration
def test_blkid_label_type_uuid(tmp_path: Path) -> None:
    blkid = _tool("blkid")
    iso = tmp_path / "seed.iso"
    iso.write_bytes(build_seed_iso(SEED, epoch=EPOCH))
    assert _run(blkid, "-o", "value", "-s", "LABEL", str(iso)).stdout.decode().strip() == "cidata"
    assert _run(blkid, "-o", "value", "-s", "TYPE", str(iso)).stdout.decode().strip() == "iso9660"
    # blkid derives an ISO's UUID from the volume *modification* date, which pycdlib makes while
    # writing: it must be the epoch, in UTC, not the time of the build.
    uuid = _run(blkid, "-p", "-o", "value", "-s", "UUID", str(iso)).stdout.decode().strip()
    assert uuid == time.strftime("%Y-%m-%d-%H-%M-%S-00", time.gmtime(EPOCH))


# --- timestamps ------------------------------------------------------------------------------------


def _vd_dates(data: bytes, sector: int) -> list[bytes]:
    vd = data[sector * SECTOR : (sector + 1) * SECTOR]
    return [vd[off : off + 17] for off in (813, 830, 847, 864)]


def _dir_date(epoch: int) -> bytes:
    t = time.gmtime(epoch)
    return bytes([t.tm_year - 1900, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, 0])


def _tf_stamps(data: bytes) -> Iterator[bytes]:
    """Every timestamp in every Rock Ridge TF entry (short 7-byte form, as pycdlib writes them)."""
    pos = data.find(b"TF")
    while pos != -1:
        length, version, flags = data[pos + 2], data[pos + 3], data[pos + 4]
        count = bin(flags & 0x7F).count("1")
        if version == 1 and not flags & 0x80 and count and length == 5 + 7 * count:
            for i in range(count):
                yield data[pos + 5 + 7 * i : pos + 12 + 7 * i]
        pos = data.find(b"TF", pos + 1)


@pytest.mark.parametrize("epoch", [EPOCH, 86_400 * 365 * 30 + 12_345])
def test_all_timestamps_are_the_epoch_in_utc(epoch: int) -> None:
    data = build_seed_iso(SEED, epoch=epoch)
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(epoch)).encode() + b"00\x00"
    for sector in (16, 17):  # primary and Joliet volume descriptors
        created, modified, expires, effective = _vd_dates(data, sector)
        assert (created, modified, effective) == (stamp, stamp, stamp), sector
        assert expires == b"0" * 16 + b"\x00"
        root_record = data[sector * SECTOR + 156 : sector * SECTOR + 156 + 34]
        assert root_record[18:25] == _dir_date(epoch)
    tf = list(_tf_stamps(data))
    assert len(tf) >= 2 * len(SEED)  # dot, dotdot and each file, at least two stamps each
    assert set(tf) == {_dir_date(epoch)}


def test_system_area_is_zero() -> None:
    assert build_seed_iso(SEED, epoch=EPOCH)[: 16 * SECTOR] == bytes(16 * SECTOR)


# --- byte identity ---------------------------------------------------------------------------------


def test_same_input_same_bytes_in_process() -> None:
    first = build_seed_iso(SEED, epoch=EPOCH)
    time.sleep(1.1)  # any unpinned second-resolution clock read would now differ
    assert build_seed_iso(SEED, epoch=EPOCH) == first
    assert build_seed_iso(dict(reversed(list(SEED.items()))), epoch=EPOCH) == first


def test_same_bytes_under_another_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    reference = build_seed_iso(SEED, epoch=EPOCH)
    try:
        monkeypatch.setenv("TZ", "Asia/Tokyo")
        time.tzset()
        if time.localtime(0).tm_gmtoff != 9 * 3600:
            pytest.skip("tzdata for Asia/Tokyo is not installed")
        assert build_seed_iso(SEED, epoch=EPOCH) == reference
    finally:
        monkeypatch.undo()
        time.tzset()


_CHILD = """
import sys, time
from builder.emit.iso import build_seed_iso
files = {"meta-data": b"instance-id: node-0\\n", "user-data": bytes(range(256)) * 40, "network-config": b""}
open(sys.argv[1], "wb").write(build_seed_iso(files, epoch=int(sys.argv[2])))
print(time.localtime(0).tm_gmtoff)
"""


def _build_in_child(tmp_path: Path, tag: str, tz: str, hash_seed: str) -> tuple[bytes, int]:
    cwd = tmp_path / f"cwd-{tag}"
    cwd.mkdir()
    out = tmp_path / f"{tag}.iso"
    env = {**os.environ, "TZ": tz, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(out), str(EPOCH)],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out.read_bytes(), int(proc.stdout)


def test_same_bytes_across_processes_time_zones_and_directories(tmp_path: Path) -> None:
    utc, utc_offset = _build_in_child(tmp_path, "utc", "UTC", "1")
    time.sleep(1.1)
    tokyo, tokyo_offset = _build_in_child(tmp_path, "tokyo", "Asia/Tokyo", "2")
    assert (utc_offset, tokyo_offset) == (0, 9 * 3600), "the children did not run in different time zones"
    assert utc == tokyo
    files = {
        "meta-data": b"instance-id: node-0\n",
        "user-data": bytes(range(256)) * 40,
        "network-config": b"",
    }
    assert build_seed_iso(files, epoch=EPOCH) == utc


def test_known_digest() -> None:
    """Pins the exact bytes, so a change of pycdlib (or of this module) that alters seeds shows up here.

    If this fails after a pycdlib upgrade, seeds baked on machines with different versions would differ:
    pin pycdlib, then update the digest deliberately.
    """
    files = {
        "meta-data": b"instance-id: golden-0\nlocal-hostname: golden-0\n",
        "user-data": b"#cloud-config\nhostname: golden-0\n",
        "network-config": b"version: 2\n",
    }
    digest = hashlib.sha256(build_seed_iso(files, epoch=EPOCH)).hexdigest()
    assert digest == "10ecdcfcdc44794e33aeaf33db5c62778c64d9c8ca971fe04b1926b6e3bf7f75", pycdlib.__file__


def test_different_epoch_or_content_different_bytes() -> None:
    reference = build_seed_iso(SEED, epoch=EPOCH)
    assert build_seed_iso(SEED, epoch=EPOCH + 1) != reference
    assert build_seed_iso({**SEED, "meta-data": SEED["meta-data"] + b"\n"}, epoch=EPOCH) != reference
    assert build_seed_iso({**SEED, "user-data": b"x" + USER_DATA[1:]}, epoch=EPOCH) != reference
    assert build_seed_iso({**SEED, "vendor-data": b""}, epoch=EPOCH) != reference


def test_concurrent_builds_in_threads() -> None:
    epochs = [EPOCH + i * 3_600 for i in range(8)]
    expected = {e: build_seed_iso(SEED, epoch=e) for e in epochs}
    results: dict[int, list[bytes]] = {e: [] for e in epochs}

    def worker(epoch: int) -> None:
        for _ in range(25):
            results[epoch].append(build_seed_iso(SEED, epoch=epoch))

    threads = [threading.Thread(target=worker, args=(e,)) for e in epochs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for epoch in epochs:
        assert results[epoch] == [expected[epoch]] * 25


def test_clock_is_restored_after_build_and_after_failure() -> None:
    from pycdlib import dates, headervd, utils
    from pycdlib import pycdlib as core

    build_seed_iso(SEED, epoch=EPOCH)
    with pytest.raises(ValueError):
        build_seed_iso({"Bad": b""}, epoch=EPOCH)
    for module in (dates, headervd, utils, core):
        assert module.time is time, module.__name__


# --- writing ---------------------------------------------------------------------------------------


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "User-Data",
        "user_data",
        "user.data",
        "/user-data",
        "user/data",
        "",
        "-user-data",
        "ü",
        "x" * 65,
        "user data",
        "user-data\n",
    ],
)
def test_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid seed file name") as info:
        build_seed_iso({**SEED, name: b"x"}, epoch=EPOCH)
    assert isinstance(info.value, BakeError)
    assert repr(name) in str(info.value)


def test_non_string_name() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        build_seed_iso({**SEED, 3: b"x"}, epoch=EPOCH)  # type: ignore[dict-item]


def test_colliding_iso9660_names() -> None:
    with pytest.raises(ValueError, match=r"USER_DAT\.;1 collides with that of 'user-data'"):
        build_seed_iso({**SEED, "user-datx": b""}, epoch=EPOCH)


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(SeedIsoError) as info:
        build_seed_iso({"A": b"", "b_c": b"", "user-data": b"", "user-data2": b""}, epoch=EPOCH)
    assert len(info.value.problems) == 3


def test_no_files() -> None:
    with pytest.raises(ValueError, match="no files"):
        build_seed_iso({}, epoch=EPOCH)


def test_content_must_be_bytes() -> None:
    with pytest.raises(ValueError, match="content must be bytes, not str"):
        build_seed_iso({"user-data": "#cloud-config"}, epoch=EPOCH)  # type: ignore[dict-item]


@pytest.mark.parametrize("epoch", [-1, 5_869_584_000, 1.5, True, "1700000000"])
def test_bad_epoch(epoch: object) -> None:
    with pytest.raises(ValueError, match=r"seed\.epoch"):
        build_seed_iso(SEED, epoch=epoch)  # type: ignore[arg-type]


def test_epoch_bounds_accepted() -> None:
    assert read_seed_iso(build_seed_iso(SEED, epoch=0)) == SEED
    assert read_seed_iso(build_seed_iso(SEED, epoch=5_869_583_999)) == SEED
