"""Hypothesis over the profile loader and the whole bake: every input bakes or fails with exit 2.

Never a traceback (exit 70 is an internal error), never partial output. `make test` runs a short
pass; `make fuzz` sets BAKE_FUZZ_EXAMPLES=10000.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder import cli, resources
from builder.check import write_files_of
from builder.errors import BakeError
from builder.profile import load_profile

EXAMPLES = int(os.environ.get("BAKE_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

NASTY = st.sampled_from(
    [
        "",
        " ",
        "a: b",
        "# c",
        "x\ny",
        "'\"",
        "$(touch /tmp/bake-pwned)",
        "`id`",
        "; rm -rf /",
        "{a: 1}",
        "[1, 2]",
        "&anchor",
        "*alias",
        "!!python/object:os.system",
        "é☃𝄞",
        "\x00",
        "-1",
        "1e309",
        "9" * 40,
        "null",
        "true",
        "10.0.0.300",
        "::1",
        "a" * 300,
    ]
)
SCALARS = st.one_of(
    NASTY,
    st.text(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(NASTY, st.text(max_size=10)), inner, max_size=4),
    ),
    max_leaves=12,
)


BILLION_LAUGHS = "l0: &l0 [lol]\n" + "".join(
    f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 10)
)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*prefix, i))
    return out


def _resolved(name: str) -> dict[str, Any]:
    """An embedded profile with its `extends` chain merged, as plain data."""
    return load_profile(name).model_dump(mode="json", by_alias=True, exclude_none=True)


BASES = {name: _resolved(name) for name in resources.profile_names()}


def _mutate(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    node: Any = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def run_cli(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(args)
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    return code, err.getvalue()


def assert_bakes_or_fails_cleanly(profile_file: Path, out: Path) -> None:
    code, err = run_cli(["--profile", str(profile_file), "--out", str(out), "--quiet"])
    assert code in (0, 2), f"exit {code}: {err}"
    assert "Traceback" not in err
    if code == 2:
        assert err.strip(), "a refused profile must say why"
        committed = [p for p in out.glob("*") if p.is_symlink()]
        assert not committed, f"partial output after a failed bake: {committed}"
        stray = list(out.glob(".bake/*/tmp-*"))
        assert not stray, f"temporary generation left behind: {stray}"


@FUZZ
@given(text=st.one_of(st.text(max_size=400), st.binary(max_size=400).map(lambda b: b.decode("latin-1"))))
def test_loader_never_crashes_on_arbitrary_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.yaml"
        path.write_bytes(text.encode("utf-8", errors="replace"))
        try:
            load_profile(str(path))
        except BakeError as exc:
            assert exc.problems


@pytest.mark.parametrize(
    "text",
    [
        "a: &x [1]\nb: *x\n",
        "cluster: {name: a}\ncluster: {name: b}\n",
        BILLION_LAUGHS,
        "[" * 200 + "]" * 200,
        "!!python/object/apply:os.system ['touch /tmp/bake-pwned']",
    ],
    ids=["alias", "duplicate-key", "billion-laughs", "deep-nesting", "python-tag"],
)
def test_hostile_yaml_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    code, err = run_cli(["--profile", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 2, err
    assert not Path("/tmp/bake-pwned").exists()


@FUZZ
@given(data=st.data())
def test_mutated_profiles_bake_or_fail_with_paths(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(BASES)))
    profile = yaml.safe_load(yaml.safe_dump(BASES[name]))
    # fast keys: the fuzz is about structure, not RSA key generation
    profile["cluster"]["encryptionAlgorithm"] = "ECDSA-P256"
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        path = data.draw(st.sampled_from(_paths(profile)))
        profile = _mutate(profile, path, data.draw(VALUES))
    tmp = Path(tempfile.mkdtemp(prefix="bake-fuzz-"))
    try:
        (tmp / "p.yaml").write_text(yaml.safe_dump(profile))
        assert_bakes_or_fails_cleanly(tmp / "p.yaml", tmp / "out")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert not Path("/tmp/bake-pwned").exists()


@FUZZ
@given(
    value=st.text(max_size=60),
    key=st.text(alphabet=st.characters(codec="ascii", categories=["L", "N", "P", "S", "Zs"]), max_size=60),
)
def test_free_text_reaches_the_node_verbatim_or_is_refused(value: str, key: str) -> None:
    """Arbitrary text in an extraArgs value and an SSH key either bakes, and then reads back exactly
    from the node's kubeadm config / users after YAML parsing (structure unchanged), or is refused."""
    profile = yaml.safe_load(yaml.safe_dump(BASES["single-master"]))
    profile["cluster"]["encryptionAlgorithm"] = "ECDSA-P256"
    profile["cluster"]["apiServer"]["extraArgs"] = [{"name": "audit-log-path", "value": value}]
    profile["defaults"]["users"] = [{"name": "ops", "sshAuthorizedKeys": [key]}]
    tmp = Path(tempfile.mkdtemp(prefix="bake-fuzz-"))
    try:
        (tmp / "p.yaml").write_text(yaml.safe_dump(profile))
        assert_bakes_or_fails_cleanly(tmp / "p.yaml", tmp / "out")
        tree = tmp / "out" / "single-master"
        if not tree.exists():
            return
        user_data = yaml.safe_load((tree / "nodes/cp-1/user-data").read_bytes())
        assert set(user_data) <= {
            "hostname",
            "fqdn",
            "prefer_fqdn_over_hostname",
            "manage_etc_hosts",
            "users",
            "ssh_pwauth",
            "write_files",
            "bootcmd",
            "runcmd",
            "disable_root",
            "ssh_deletekeys",
            "package_update",
            "package_upgrade",
            "timezone",
            "ntp",
            "final_message",
            "preserve_hostname",
            "create_hostname_file",
        }, sorted(user_data)
        (ops,) = [u for u in user_data["users"] if isinstance(u, dict) and u.get("name") == "ops"]
        assert ops.get("ssh_authorized_keys", []) == [key]
        content, _, _ = write_files_of((tree / "nodes/cp-1/user-data").read_bytes())[
            "/run/kubeadm/kubeadm.yaml"
        ]
        docs = list(yaml.safe_load_all(content))
        cluster = next(d for d in docs if d["kind"] == "ClusterConfiguration")
        assert {"name": "audit-log-path", "value": value} in cluster["apiServer"]["extraArgs"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
