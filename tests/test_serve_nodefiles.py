"""builder.serve.nodefiles and the reporter: what a node gets to report its first boot, and the real
report.sh run as root in a private mount namespace against the real server (curl, sha256sum, date of
the host; all traffic on loopback).

Without cluster.seed.reportUrl nothing of it is in a seed (and the goldens, baked without it, stay as
they were: tests/test_goldens.py).
"""

from __future__ import annotations

import base64
import os
import socket
import stat
import subprocess
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from builder import paths, resources
from builder.node import bootstrap, cloudinit, distribute
from builder.pki import secrets
from builder.plan import ClusterPlan, build_plan
from builder.validation.profile import load_profile

from .helpers import OVERLAYS, bundle, rendered_node, tree_digest
from .peers import missing, program
from .serve_support import CLUSTER, bake_loopback, free_port, load, running, seed_files

REPORT_PATHS = {paths.REPORT_KEY, paths.REPORT_ENV, paths.REPORT_CA, bootstrap.layout.REPORT_SCRIPT_PATH}


def _files(plan: ClusterPlan, bundle_: secrets.Bundle, name: str) -> dict[str, Any]:
    node = plan.node(name)
    files = cloudinit.node_files(
        plan, node, pki_files=distribute.node_pki_files(plan, node, bundle_), token=bundle_.token,
        ca_hash=bundle_.discovery_hash,
    )  # fmt: skip
    return {f.path: f for f in files}


@pytest.mark.parametrize("profile", resources.profile_names())
def test_nothing_of_it_without_a_report_url(profile: str) -> None:
    plan = build_plan(load_profile(profile))
    bundle_, _ = secrets.reconcile(plan, None, now=secrets.utcnow())
    assert bundle_.report_key is None and bundle_.seed_ca is None
    assert not any(
        rel.startswith(("report", "pki/seed")) for rel, _, _ in secrets.bundle_files(bundle_, plan)
    )
    for node in plan.nodes:
        files = _files(plan, bundle_, node.name)
        assert not REPORT_PATHS & set(files), node.name
        assert not [p for p, f in files.items() if b"report.sh" in f.content], node.name


def test_every_node_gets_its_own_key_the_reporter_and_the_unit_lines(baked: Any) -> None:
    plan, bundle_ = baked("ha-external-etcd", "cluster.seed.reportUrl=http://10.77.0.1:8080/")
    keys = set()
    master = base64.b64encode(bundle_.report_key)
    for node in plan.nodes:
        files = _files(plan, bundle_, node.name)
        key = files[paths.REPORT_KEY]
        assert key.mode == 0o600 and key.secret
        assert len(key.content.strip()) == 64 and master not in key.content
        keys.add(key.content)
        assert files[bootstrap.layout.REPORT_SCRIPT_PATH].mode == 0o755
        env = files[paths.REPORT_ENV]
        assert env.mode == 0o644 and not env.secret
        assert env.content.decode().splitlines()[1:] == [
            "BAKE_REPORT_URL=http://10.77.0.1:8080/report",
            "BAKE_REPORT_CLUSTER=ha-external-etcd",
            f"BAKE_REPORT_NODE={node.name}",
            "BAKE_REPORT_CACERT=''",
        ]
        assert paths.REPORT_CA not in files  # plain http: nothing to pin
        phases = [(bootstrap.units.phase_unit_path(p), p) for p in bootstrap.layout.PHASES]
        for unit, step in [(bootstrap.layout.UNIT_PATH, "bootstrap"), *phases]:
            text = files[unit].content.decode()
            lines = [line for line in text.splitlines() if "report.sh" in line]
            done = "finished" if step == "bootstrap" else "done"
            assert lines == [
                f"ExecStartPre=-{bootstrap.layout.REPORT_SCRIPT_PATH} {step} started",
                f"ExecStartPost=-{bootstrap.layout.REPORT_SCRIPT_PATH} {step} {done}",
                f"ExecStopPost=-{bootstrap.layout.REPORT_SCRIPT_PATH} {step} stopped",
            ], unit
            # the unit is otherwise the one baked without reports
            assert "\n".join(ln for ln in text.splitlines() if "report.sh" not in ln) + "\n" == (
                bootstrap.units.unit_text() if step == "bootstrap" else bootstrap.units.phase_unit_text(step)
            )
    assert len(keys) == len(plan.nodes)


def test_the_reporter_reads_exactly_the_env_names() -> None:
    import re

    from builder.serve import nodefiles

    used = set(re.findall(r"\bBAKE_[A-Z0-9_]*[A-Z0-9]", nodefiles.script_text()))
    assert used == set(nodefiles.ENV_NAMES)
    text = nodefiles.script_text()
    assert text.startswith("#!/bin/bash\n") and "\nexit 0\n" in text
    assert "lib.sh" not in text  # the reporter never runs the bootstrap's strict mode


@pytest.mark.integration
def test_reporter_passes_shellcheck() -> None:
    proc = subprocess.run(
        [program("shellcheck"), "--shell=bash", "--severity=style",
         str(resources.templates_dir() / "bootstrap" / "report.sh")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout


def test_a_rebake_gives_the_same_seeds_and_dropping_the_url_drops_the_key(tmp_path: Path) -> None:
    out = tmp_path / "out"
    url = ("--set", "cluster.seed.reportUrl=https://10.77.0.1:8443")
    tree = bake_loopback(out, *url)
    first = tree_digest(tree / "nodes")
    kept = tree_digest(bundle(out, CLUSTER))
    assert "report-key" in kept and "pki/seed-server.key" in kept
    tree = bake_loopback(out, *url)
    assert tree_digest(tree / "nodes") == first
    assert tree_digest(bundle(out, CLUSTER)) == kept
    tree = bake_loopback(out)
    assert "report-key" not in tree_digest(bundle(out, CLUSTER))
    assert not [p for p in seed_files(tree, "worker-1") if "report" in p]


# --------------------------------------------------------------------------------------------------
# the real reporter in a sandbox, against the real server

SANDBOX = (
    r"""#!/bin/bash
# Runs inside `unshare -m`: nothing written here reaches the host's /etc, /var, /usr/local or /run.
set -euo pipefail
S=$1
"""
    + OVERLAYS
    + r"""mount -t tmpfs tmpfs /run
while IFS= read -r -d '' path && IFS= read -r -d '' mode; do
    install -D -m "$mode" "$S/files/${path#/}" "$path"
done <"$S/files.list"
R=/usr/local/lib/bake/bootstrap/report.sh
report() {  # as systemd runs a unit's line: its environment, and the time it took
    local start=$SECONDS rc=0
    env "$@" >>"$S/out/stderr" 2>&1 || rc=$?
    echo "$rc $((SECONDS - start)) $*" >>"$S/out/calls"
}
. "$S/scenario.sh"
cp -a /var/lib/bake/. "$S/out/state/" 2>/dev/null || true
"""
)


class ReporterSandbox:
    def __init__(self, root: Path, files: dict[str, bytes]) -> None:
        self.root = root
        (root / "out" / "state").mkdir(parents=True)
        listing = b""
        for path, data in files.items():
            if path in REPORT_PATHS:
                target = root / "files" / path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                mode = "0755" if path.endswith(".sh") else "0600" if path.endswith(".key") else "0644"
                listing += path.encode() + b"\0" + mode.encode() + b"\0"
        (root / "files.list").write_bytes(listing)
        (root / "driver.sh").write_text(SANDBOX)

    def run(self, scenario: str) -> list[tuple[int, int, str]]:
        (self.root / "scenario.sh").write_text(textwrap.dedent(scenario))
        proc = subprocess.run(
            ["unshare", "-m", "bash", str(self.root / "driver.sh"), str(self.root)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        calls = []
        for line in (self.root / "out" / "calls").read_text().splitlines():
            rc, seconds, what = line.split(" ", 2)
            calls.append((int(rc), int(seconds), what))
        return calls


@pytest.fixture(scope="module")
def can_sandbox(tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("probe")
    if os.geteuid() != 0 or not all(map(program, ("unshare", "curl", "sha256sum"))):
        missing("the reporter sandbox needs root and unshare (private mount namespace)")
    probe = "mkdir -p $0/u $0/w && mount -t overlay overlay -o lowerdir=/etc,upperdir=$0/u,workdir=$0/w /etc"
    proc = subprocess.run(["unshare", "-m", "sh", "-c", probe, str(tmp)], capture_output=True)
    if proc.returncode != 0:
        missing(f"no overlay mounts in a private mount namespace here: {proc.stderr!r}")


LOG = "".join(f"2026-12-02T10:00:{i:02d}Z kubeadm[1]: line {i}\n" for i in range(60)) + "E: <b>boom</b> é\n"


@pytest.mark.integration
def test_the_reporter_tells_the_server_each_step(can_sandbox: None, tmp_path: Path) -> None:
    port = free_port()
    tree = bake_loopback(tmp_path / "out", "--set", f"cluster.seed.reportUrl=http://127.0.0.1:{port}")
    sb = ReporterSandbox(tmp_path / "sb", seed_files(tree, "worker-1"))
    with running(load(tree), port=port) as srv:
        calls = sb.run(
            f"""
            install -d -m 0700 /var/log/bake
            printf '%s' {_quote(LOG)} >/var/log/bake/bootstrap.log
            report $R bootstrap started
            report $R prep started
            report $R prep done
            report $R kubeadm started
            report SERVICE_RESULT=exit-code EXIT_CODE=exited EXIT_STATUS=1 $R kubeadm stopped
            report SERVICE_RESULT=exit-code EXIT_CODE=exited 'EXIT_STATUS=1;reboot' $R bootstrap stopped
            report SERVICE_RESULT=success $R prep stopped
            report $R bootstrap finished
            report $R kubeadm started
            report $R kubeadm done
            touch /var/lib/bake/bootstrap.done
            report $R bootstrap finished
            stat -c '%a' /var/lib/bake/report.seq >"$S/out/seq-mode"
            """
        )
        doc = srv.server.stores[CLUSTER].nodes(["worker-1"])["worker-1"]
        events = srv.server.stores[CLUSTER].events("worker-1")
    assert [c[0] for c in calls] == [0] * len(calls)
    assert [(e["step"], e["event"]) for e in events] == [
        ("bootstrap", "started"), ("prep", "started"), ("prep", "done"), ("kubeadm", "started"),
        ("kubeadm", "failed"), ("bootstrap", "failed"), ("kubeadm", "started"), ("kubeadm", "done"),
        ("bootstrap", "done"),
    ]  # fmt: skip
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert abs(events[0]["nodeTime"] - time.time()) < 600
    steps = {s["step"]: s for s in doc["steps"]}
    kubeadm = steps["kubeadm"]
    assert kubeadm["state"] == "done" and kubeadm["failures"] == 1 and kubeadm["exit"] == "exited:1"
    assert kubeadm["tail"] == "".join(LOG.splitlines(keepends=True)[-40:])
    assert steps["bootstrap"]["exit"] == "exited:1reboot"
    assert doc["current"] == {"step": "bootstrap", "event": "done"}
    assert (tmp_path / "sb" / "out" / "seq-mode").read_text().strip() == "600"
    statuses = [line.split()[4] for line in srv.log.splitlines()]
    assert statuses == ["204"] * 9, srv.log  # nothing refused


@pytest.mark.integration
def test_the_reporter_never_holds_or_fails_the_bootstrap(can_sandbox: None, tmp_path: Path) -> None:
    """No server, a server that never answers, a server that refuses: exit 0 every time, within the
    script's bound (2 s to connect, 4 s in all)."""
    port = free_port()
    tree = bake_loopback(tmp_path / "out", "--set", f"cluster.seed.reportUrl=http://127.0.0.1:{port}")
    files = seed_files(tree, "worker-1")
    sb = ReporterSandbox(tmp_path / "sb", files)
    calls = sb.run("report $R prep started\n")  # nobody listens on the port
    assert calls == [(0, calls[0][1], "/usr/local/lib/bake/bootstrap/report.sh prep started")]
    assert calls[0][1] <= 2
    assert "not reported to http://127.0.0.1" in (tmp_path / "sb" / "out" / "stderr").read_text()
    silent = socket.socket()
    silent.bind(("127.0.0.1", port))
    silent.listen(16)  # accepts connections, never answers
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        sb2 = ReporterSandbox(tmp_path / "sb2", files)
        [(rc, seconds, _)] = sb2.run("report $R prep started\n")
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        silent.close()
    assert rc == 0 and seconds <= 6
    # a key that is not the node's: refused by the server, and still exit 0
    files[paths.REPORT_KEY] = b"0" * 64 + b"\n"
    sb3 = ReporterSandbox(tmp_path / "sb3", files)
    with running(load(tree), port=port) as srv:
        [(rc, _, _)] = sb3.run("report $R prep started\n")
    assert rc == 0
    assert "refused report: bad signature for single-master/worker-1" in srv.log
    # and no report at all when the env file is not there (a seed without a report URL)
    sb4 = ReporterSandbox(
        tmp_path / "sb4", {bootstrap.layout.REPORT_SCRIPT_PATH: files[bootstrap.layout.REPORT_SCRIPT_PATH]}
    )
    assert sb4.run("report $R prep started\n")[0][0] == 0


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


@pytest.mark.integration
def test_units_with_reports_pass_systemd_analyze_verify(can_sandbox: None, tmp_path: Path) -> None:
    from .test_bootstrap import Sandbox

    program("systemd-analyze", "systemd")
    sets = ["cluster.packages.mode=prebaked", "cluster.seed.reportUrl=http://10.77.0.1:8080"]
    plan = build_plan(load_profile("single-master", sets))
    rendered = rendered_node(plan, "worker-1")
    sb = Sandbox(tmp_path / "sb", rendered, plan)
    units = [bootstrap.layout.UNIT_PATH]
    units += [bootstrap.units.phase_unit_path(p) for p in bootstrap.layout.PHASES]
    sb.run(
        f"""
        rc=0
        systemd-analyze verify {" ".join(units)} >"$S/out/verify.log" 2>&1 || rc=$?
        echo "$rc" >"$S/out/verify.rc"
        """
    )
    assert sb.text("verify.rc").strip() == "0", sb.text("verify.log")
    assert "bake-" not in sb.text("verify.log"), sb.text("verify.log")
    modes = {f.path: stat.S_IMODE(f.mode) for f in rendered.files}
    assert modes[paths.REPORT_KEY] == 0o600


# --------------------------------------------------------------------------------------------------
# the signature: HMAC-SHA256 in the shell, the key on no command line

REPORT_SH = resources.templates_dir() / "bootstrap" / "report.sh"
NODE_KEY = "5f" * 16 + "a0" * 16  # 64 hex digits, as bake writes a node's key


def _shell_hmac(key: str, body: bytes) -> str:
    """report.sh's hmac_sha256, sourced (the script runs nothing when sourced), over `body` on stdin."""
    proc = subprocess.run(
        ["bash", "-c", '. "$1" && hmac_sha256 "$2"', "bash", str(REPORT_SH), key],
        input=body, capture_output=True, check=True,
    )  # fmt: skip
    return proc.stdout.decode().strip()


@pytest.mark.parametrize(
    "body",
    [b"", b"{}", b'{"v":1,"node":"worker-1"}', bytes(range(256)), b"\x80\xff\xfe caf\xc3\xa9", b"x" * 5000],
    ids=["empty", "braces", "json", "every-byte", "high-bytes", "long"],
)
@pytest.mark.parametrize("key", [NODE_KEY, "k", "short key!", "~" * 64], ids=["node-key", "1", "10", "64"])
def test_the_reporter_signs_as_python_hmac(key: str, body: bytes) -> None:
    import hashlib
    import hmac

    assert _shell_hmac(key, body) == hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def test_the_reporter_refuses_a_key_it_cannot_pad() -> None:
    for key in ("", "a" * 65):
        proc = subprocess.run(
            ["bash", "-c", '. "$1" && hmac_sha256 "$2"', "bash", str(REPORT_SH), key],
            input=b"x", capture_output=True,
        )  # fmt: skip
        assert proc.returncode != 0 and proc.stdout == b"", key


SHIMMED = ("cat", "sha256sum", "openssl", "curl", "date", "install", "dirname", "flock", "tail", "base64",
           "cut", "head", "sed", "env", "mkdir")  # fmt: skip


@pytest.mark.integration
def test_the_report_key_is_on_no_command_line(can_sandbox: None, tmp_path: Path) -> None:
    """Every external command report.sh runs is a shim first in its PATH that logs its whole argv: the
    node's key, as hex or as raw bytes, is in none of them, and the server still accepts the report."""
    port = free_port()
    tree = bake_loopback(tmp_path / "out", "--set", f"cluster.seed.reportUrl=http://127.0.0.1:{port}")
    files = seed_files(tree, "worker-1")
    key = files[paths.REPORT_KEY].strip()
    assert len(key) == 64
    sb = ReporterSandbox(tmp_path / "sb", files)
    shims = "\n".join(
        f"""real=$(command -v {name}) && printf '#!/bin/bash\\n{{ printf "%%s\\\\0" "$0" "$@"; printf "\\\\n"; }} >>"%s"\\nexec %s "$@"\\n' "$S/out/argv" "$real" >/usr/local/sbin/{name} && chmod 0755 /usr/local/sbin/{name}"""  # noqa: E501
        for name in SHIMMED
    )
    with running(load(tree), port=port) as srv:
        calls = sb.run(
            f"""
            install -d -m 0755 /usr/local/sbin
            {shims}
            install -d -m 0700 /var/log/bake
            echo 'E: boom' >/var/log/bake/bootstrap.log
            report $R prep started
            report SERVICE_RESULT=exit-code EXIT_CODE=exited EXIT_STATUS=1 $R prep stopped
            """
        )
        events = srv.server.stores[CLUSTER].events("worker-1")
    assert [c[0] for c in calls] == [0, 0]
    assert [(e["step"], e["event"]) for e in events] == [("prep", "started"), ("prep", "failed")], srv.log
    logged = (tmp_path / "sb" / "out" / "argv").read_bytes()
    argvs = [line.split(b"\0")[:-1] for line in logged.splitlines() if line]
    ran = {Path(argv[0].decode()).name for argv in argvs}
    assert {"curl", "date"} <= ran, ran  # the shims did see the script's commands
    assert key not in logged and key.upper() not in logged, [a for a in argvs if key in b" ".join(a)]
    assert bytes.fromhex(key.decode()) not in logged
