"""Tests for builder.model.versions: table shape, monotonic facts, parsing and the skew policy."""

from __future__ import annotations

import dataclasses
import itertools
import re

import pytest

from builder.errors import BakeError
from builder.model import versions
from builder.model.versions import (
    ABSENT,
    GA,
    NEWEST_MINOR,
    OLDEST_MINOR,
    REMOVED,
    TABLE,
    MinorInfo,
    VersionError,
    full_version,
    image_tag_key,
    lookup,
    parse_version,
    skew_problems,
)

ROWS = [TABLE[m] for m in sorted(TABLE)]
PAIRS = list(itertools.pairwise(ROWS))

# Facts that, once true, must stay true in every newer minor.
SWITCHED_ON = [
    "etcd_36_flags",
    "control_plane_kubelet_local_mode",
    "node_local_cri_socket",
    "named_probe_port",
    "ecdsa_p384",
    "etcd_external_http_endpoints",
    "extra_args_user_order_kept",
]
# Facts that, once false, must stay false.
SWITCHED_OFF = ["v1beta3_accepted", "pod_infra_container_image_flag"]


# --- table shape -------------------------------------------------------------------------------


def test_table_covers_31_to_37_contiguously() -> None:
    assert sorted(TABLE) == list(range(31, 38))
    assert OLDEST_MINOR == 31
    assert NEWEST_MINOR == 37 == max(TABLE)


def test_keys_match_rows() -> None:
    for minor, info in TABLE.items():
        assert info.minor == minor
        assert info.version == f"1.{minor}"


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        TABLE[38] = TABLE[37]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        TABLE[35].etcd_tag = "x"  # type: ignore[misc]


@pytest.mark.parametrize("info", ROWS, ids=lambda i: i.version)
def test_default_patch_belongs_to_its_minor(info: MinorInfo) -> None:
    assert re.fullmatch(r"1\.\d+\.\d+", info.default_patch)
    assert parse_version(info.default_patch)[:2] == (1, info.minor)


@pytest.mark.parametrize("info", ROWS, ids=lambda i: i.version)
def test_tag_formats(info: MinorInfo) -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+-\d+", info.etcd_tag), info.etcd_tag
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", info.pause_tag), info.pause_tag
    assert re.fullmatch(r"v\d+\.\d+\.\d+", info.coredns_tag), info.coredns_tag
    assert info.containerd_config_version in (2, 3)


@pytest.mark.parametrize("info", ROWS, ids=lambda i: i.version)
def test_flag_fields_are_bools(info: MinorInfo) -> None:
    for field in dataclasses.fields(MinorInfo):
        if field.type in ("bool", bool):
            assert isinstance(getattr(info, field.name), bool), field.name


# --- internal consistency ----------------------------------------------------------------------


@pytest.mark.parametrize("info", ROWS, ids=lambda i: i.version)
def test_etcd_flags_follow_the_etcd_image(info: MinorInfo) -> None:
    # kubeadm switches to the 3.6 flag names exactly when its etcd image is >= 3.6.0.
    assert info.etcd_36_flags == (info.etcd_version >= (3, 6, 0))


def test_etcd_version_property() -> None:
    assert TABLE[31].etcd_version == (3, 5, 15)
    assert TABLE[37].etcd_version[:2] == (3, 7)


@pytest.mark.parametrize("info", ROWS, ids=lambda i: i.version)
def test_ncrisocket_and_gate_agree(info: MinorInfo) -> None:
    state = info.gate_state("NodeLocalCRISocket")
    if info.node_local_cri_socket:
        assert state in ("beta", GA, REMOVED)
    else:
        assert state in ("alpha", ABSENT)


@pytest.mark.parametrize("info", ROWS, ids=lambda i: i.version)
def test_local_mode_and_gate_agree(info: MinorInfo) -> None:
    state = info.gate_state("ControlPlaneKubeletLocalMode")
    assert info.control_plane_kubelet_local_mode == (state in ("beta", GA, REMOVED))


def test_public_keys_ecdsa_goes_with_v1beta3() -> None:
    for info in ROWS:
        assert (info.gate_state("PublicKeysECDSA") != REMOVED) == info.v1beta3_accepted


def test_unknown_gate_is_absent() -> None:
    assert TABLE[35].gate_state("NoSuchGate") == ABSENT


# --- monotonic facts ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", SWITCHED_ON)
def test_once_on_stays_on(field: str) -> None:
    for older, newer in PAIRS:
        if getattr(older, field):
            assert getattr(newer, field), f"{field} turns off again in {newer.version}"


@pytest.mark.parametrize("field", SWITCHED_OFF)
def test_once_off_stays_off(field: str) -> None:
    for older, newer in PAIRS:
        if not getattr(older, field):
            assert not getattr(newer, field), f"{field} turns on again in {newer.version}"


@pytest.mark.parametrize("field", ["etcd_tag", "pause_tag", "coredns_tag"])
def test_image_tags_never_go_backwards(field: str) -> None:
    for older, newer in PAIRS:
        assert image_tag_key(getattr(newer, field)) >= image_tag_key(getattr(older, field)), (
            f"{field}: {newer.version} has {getattr(newer, field)} < {getattr(older, field)}"
        )


def test_default_patches_increase() -> None:
    for older, newer in PAIRS:
        assert parse_version(newer.default_patch) > parse_version(older.default_patch)


def test_containerd_schema_never_goes_back() -> None:
    for older, newer in PAIRS:
        assert newer.containerd_config_version >= older.containerd_config_version


def test_known_boundaries() -> None:
    # Pin the boundaries renderers rely on, so an edit to one row cannot silently move them.
    assert [m for m in TABLE if TABLE[m].etcd_36_flags] == [34, 35, 36, 37]
    assert [m for m in TABLE if TABLE[m].named_probe_port] == [34, 35, 36, 37]
    assert [m for m in TABLE if TABLE[m].ecdsa_p384] == [34, 35, 36, 37]
    assert [m for m in TABLE if TABLE[m].node_local_cri_socket] == [34, 35, 36, 37]
    assert [m for m in TABLE if TABLE[m].control_plane_kubelet_local_mode] == [33, 34, 35, 36, 37]
    assert [m for m in TABLE if TABLE[m].pod_infra_container_image_flag] == [31, 32, 33, 34]
    assert [m for m in TABLE if TABLE[m].v1beta3_accepted] == [31, 32, 33, 34, 35, 36]
    assert [m for m in TABLE if TABLE[m].containerd_config_version == 3] == [35, 36, 37]


def test_image_tag_key_orders_numerically() -> None:
    assert image_tag_key("3.5.9-0") < image_tag_key("3.5.15-0") < image_tag_key("3.6.4-0")
    assert image_tag_key("3.10") < image_tag_key("3.10.1") < image_tag_key("3.10.2")
    assert image_tag_key("3.9") < image_tag_key("3.10")
    assert image_tag_key("v1.11.3") < image_tag_key("v1.14.6")
    assert image_tag_key("3.6.1-0") < image_tag_key("3.6.1-1")
    with pytest.raises(ValueError):
        image_tag_key("latest")


# --- parse_version -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.35", (1, 35, 0)),
        ("1.35.2", (1, 35, 2)),
        ("v1.35.2", (1, 35, 2)),
        ("v1.31", (1, 31, 0)),
        ("1.30.1", (1, 30, 1)),
        ("2.0.0", (2, 0, 0)),
        (" 1.36.4 ", (1, 36, 4)),
    ],
)
def test_parse_version_accepts(text: str, expected: tuple[int, int, int]) -> None:
    assert parse_version(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "",
        "1",
        "v",
        "1.",
        "1.35.",
        "1.35.2.1",
        "V1.35",
        "1.35.0-rc.1",
        "1.35.0+build",
        "01.35",
        "1.035",
        "1 .35",
    ],
)
def test_parse_version_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a kubernetes version"):
        parse_version(text)


def test_parse_version_rejects_non_strings() -> None:
    with pytest.raises(ValueError):
        parse_version(135)  # type: ignore[arg-type]


def test_version_error_is_both_kinds() -> None:
    with pytest.raises(BakeError):
        parse_version("abc")
    assert issubclass(VersionError, ValueError)
    assert issubclass(VersionError, BakeError)


# --- lookup ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1.35", "1.35.0", "v1.35.2", "1.35.99"])
def test_lookup_finds_the_minor(text: str) -> None:
    assert lookup(text) is TABLE[35]


def test_lookup_every_row() -> None:
    for minor, info in TABLE.items():
        assert lookup(f"1.{minor}") is info
        assert lookup(info.default_patch) is info


def test_lookup_too_old() -> None:
    with pytest.raises(BakeError) as err:
        lookup("1.30.1")
    assert str(err.value) == "kubernetes version 1.30.1 is not supported: this bake supports 1.31 – 1.37"


def test_lookup_message_keeps_users_text_without_v() -> None:
    with pytest.raises(
        BakeError, match=r"^kubernetes version 1\.29\.3 is not supported: this bake supports 1\.31 – 1\.37$"
    ):
        lookup("v1.29.3")


def test_lookup_too_new() -> None:
    with pytest.raises(BakeError, match=r"1\.38 is not supported"):
        lookup("1.38")


def test_lookup_wrong_major() -> None:
    with pytest.raises(BakeError, match=r"2\.0\.0 is not supported: this bake supports 1\.31 – 1\.37"):
        lookup("2.0.0")
    with pytest.raises(BakeError):
        lookup("0.35.0")


def test_lookup_garbage_is_a_bake_error() -> None:
    with pytest.raises(BakeError, match="not a kubernetes version") as err:
        lookup("abc")
    assert isinstance(err.value, ValueError)


def test_lookup_reports_the_path() -> None:
    with pytest.raises(BakeError) as err:
        lookup("1.30", path="kubernetesVersion")
    (problem,) = err.value.problems
    assert problem.path == "kubernetesVersion"
    assert str(err.value).startswith("kubernetesVersion: kubernetes version 1.30 is not supported")


# --- full_version ------------------------------------------------------------------------------


def test_full_version_completes_minor_only() -> None:
    assert full_version("1.35") == TABLE[35].default_patch
    assert full_version("v1.37") == TABLE[37].default_patch


@pytest.mark.parametrize(
    ("text", "expected"), [("v1.35.2", "1.35.2"), ("1.31.0", "1.31.0"), ("1.36.10", "1.36.10")]
)
def test_full_version_keeps_explicit_patch(text: str, expected: str) -> None:
    assert full_version(text) == expected


@pytest.mark.parametrize("text", ["1.30.1", "2.0.0", "abc", "1.38"])
def test_full_version_errors(text: str) -> None:
    with pytest.raises(BakeError):
        full_version(text)


# --- skew_problems -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("control_plane", "kubelet"),
    [("1.35", "1.35"), ("1.35.0", "1.35.9"), ("1.35", "1.34"), ("1.35", "1.32"), ("v1.37.1", "1.34.0")],
)
def test_skew_ok(control_plane: str, kubelet: str) -> None:
    assert skew_problems(control_plane, kubelet) == []


def test_skew_three_older_is_ok() -> None:
    assert skew_problems("1.36", "1.33") == []


def test_skew_kubelet_newer() -> None:
    (problem,) = skew_problems("1.34.2", "1.35.0")
    assert "newer" in problem and "1.35.0" in problem and "1.34.2" in problem


def test_skew_four_older() -> None:
    (problem,) = skew_problems("1.37", "1.33")
    assert "4 minor versions older" in problem


def test_skew_major_mismatch() -> None:
    assert skew_problems("2.0", "1.35") != []


def test_skew_garbage_raises() -> None:
    with pytest.raises(ValueError):
        skew_problems("abc", "1.35")


# --- module hygiene ----------------------------------------------------------------------------


def test_all_exports_exist() -> None:
    for name in versions.__all__:
        assert hasattr(versions, name), name
