#!/usr/bin/python3
"""The bootstrap's declared test stop (TEST ONLY; tests/vm/README.md, "Contract"), as systemd drop-ins.

No production seed carries a test hook: the VM harness (bake-test-report --hooks, before cloud-init) and
the root sandbox of tests/test_bootstrap.py install this file as /usr/local/sbin/bake-test-stop and run
`bake-test-stop install [OPTION...]` (a `systemctl daemon-reload` follows when a drop-in changed and the
units are there already). That writes the options file and drop-ins for the bake units:

- bake-bootstrap-wait.service: `ExecCondition=` this script's `stop before-waits`;
- bake-bootstrap-kubeadm.service: `ConditionPathExists=!STOPPED` and `ExecCondition=` `stop before-kubeadm`;
- bake-bootstrap-cni.service: `ConditionPathExists=!STOPPED`;

so the phase at the stop is skipped (ExecCondition exits 1), after writing STOPPED (the command the
bootstrap would now run) and a `TEST STOP` log line, and the phases after it are skipped too; the driver
sees a skipped phase and ends without the done marker. Options (one a line, as before):
`interrupt-kubeadm` is not a stop: the bootstrap runs to the end, but the first `kubeadm init|join` is
killed once this node's kubelet has registered it (a join: once the Node is Ready), exactly once per node
(bake-test-interrupt.service, pulled in by the kubeadm unit's drop-in; the marker INTERRUPTED keeps
later runs from doing it again), so the bootstrap's own retry must reset the node and finish;
`after-waits` moves the stop from before the wait phase to right before kubeadm (the wait phase's
kubeadm presence check, its ExecStartPre=, is dropped: a test image has no kubeadm); `wait-seconds=N`
bounds the waits, `attempts=N` the driver's restarts in one boot: those values replace the env file's
for the wait unit and the driver, through a copy bind-mounted over it (BindReadOnlyPaths=) that
bake-test-env.service writes first, outside any mount namespace (Requires= / After= on it).
Standard library only: it runs on Debian 12's python3.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

OPTIONS_FILE = Path("/etc/bake/test-stop-before-kubeadm")
OPTIONS_TEXT = "VM test: bake-bootstrap stops before kubeadm (written by bake-test-stop install).\n"
STOPPED = Path("/var/lib/bake/bootstrap.stopped")
LOG = Path("/var/log/bake/bootstrap.log")
ENV = Path("/etc/bake/bootstrap.env")
TEST_ENV = Path("/run/bake-test/bootstrap.env")
UNIT_DIR = Path("/etc/systemd/system")
DROPIN = "50-bake-test-stop.conf"
TEST_ENV_MARK = "# TEST ONLY: bake-test-stop\n"
DRIVER = "bake-bootstrap.service"
ENV_UNIT = "bake-test-env.service"
SELF = "/usr/local/sbin/bake-test-stop"
PYTHON = "/usr/bin/python3"
OVERRIDES = {
    "wait-seconds": ("BAKE_WAIT_ENDPOINT_SECONDS", "BAKE_WAIT_PEERS_SECONDS", "BAKE_WAIT_ETCD_SECONDS"),
    "attempts": ("BAKE_RETRY_MAX_ATTEMPTS",),
}
_OPTION = re.compile(
    r"^(before-waits|after-waits|interrupt-kubeadm|wait-seconds=[0-9]{1,6}|attempts=[1-9][0-9]{0,2})$"
)
INTERRUPT = "interrupt-kubeadm"
INTERRUPT_UNIT = "bake-test-interrupt.service"
INTERRUPTED = Path("/var/lib/bake-test/kubeadm.interrupted")
KUBELET_CONF = Path("/etc/kubernetes/kubelet.conf")
KUBECTL = "/usr/bin/kubectl"
INTERRUPT_WAIT_S = 3600  # the watcher's bound: a kubeadm that never gets there is the test's failure
READY_WAIT_S = 900  # a joined node is killed once Ready (the case kubeadm join refuses), or after this


def phase_unit(phase: str) -> str:
    return f"bake-bootstrap-{phase}.service"


def read_options(path: Path = OPTIONS_FILE) -> list[str]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [line for line in lines if _OPTION.match(line)]


def overrides(options: list[str]) -> dict[str, str]:
    """Env names and the values the options give them (the last of a kind wins)."""
    out: dict[str, str] = {}
    for option in options:
        key, _, value = option.partition("=")
        for name in OVERRIDES.get(key, ()):
            out[name] = value
    return out


def dropins(options: list[str]) -> dict[str, str]:
    """Unit name -> the text of its test drop-in."""
    if INTERRUPT in options:
        return {
            phase_unit("kubeadm"): "# TEST ONLY: bake-test-stop (tests/vm/guest/bake_test_stop.py)\n"
            f"[Unit]\nWants={INTERRUPT_UNIT}\n"
        }
    condition = f"ExecCondition=+{PYTHON} {SELF} stop"
    # The copy must exist before systemd sets up a unit's mount namespace (which it does for every
    # command of the unit, '+' ones included, on systemd 252): ENV_UNIT writes it, outside any namespace.
    needs_copy = f"[Unit]\nRequires={ENV_UNIT}\nAfter={ENV_UNIT}\n\n"
    bind = f"BindReadOnlyPaths={TEST_ENV}:{ENV}\n"
    has_overrides = bool(overrides(options))
    wait = (needs_copy if has_overrides else "") + "[Service]\n" + f"{condition} before-waits\n"
    if "after-waits" in options:
        wait += "ExecStartPre=\n"  # the kubeadm presence check: a test image has no kubeadm
    if has_overrides:
        wait += bind
    units = {
        phase_unit("wait"): wait,
        phase_unit(
            "kubeadm"
        ): f"[Unit]\nConditionPathExists=!{STOPPED}\n\n[Service]\n{condition} before-kubeadm\n",
        phase_unit("cni"): f"[Unit]\nConditionPathExists=!{STOPPED}\n",
    }
    if has_overrides:
        units[DRIVER] = f"{needs_copy}[Service]\n{bind}"
    return {
        name: "# TEST ONLY: bake-test-stop (tests/vm/guest/bake_test_stop.py)\n" + text
        for name, text in units.items()
    }


def _write(path: Path, text: str) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return True


ENV_UNIT_TEXT = f"""# TEST ONLY: bake-test-stop (tests/vm/guest/bake_test_stop.py)
[Unit]
Description=TEST ONLY: the bootstrap env with the VM test's overrides ({TEST_ENV})

[Service]
Type=oneshot
ExecStart={PYTHON} {SELF} env
"""


INTERRUPT_UNIT_TEXT = f"""# TEST ONLY: bake-test-stop (tests/vm/guest/bake_test_stop.py)
[Unit]
Description=TEST ONLY: kill the first kubeadm init/join once this node has registered

[Service]
Type=exec
ExecStart={PYTHON} {SELF} interrupt
"""


def _all_dropins() -> list[Path]:
    return sorted(UNIT_DIR.glob(f"bake-bootstrap*.service.d/{DROPIN}"))


def install(options: list[str]) -> bool:
    """Options file and drop-ins; a stale STOPPED goes. True when a drop-in changed."""
    bad = [o for o in options if not _OPTION.match(o)]
    if bad:
        raise SystemExit(f"bake-test-stop: unknown options {bad}")
    if INTERRUPT in options and len(options) > 1:
        raise SystemExit(f"bake-test-stop: {INTERRUPT} is not a stop and takes no other option: {options}")
    _write(OPTIONS_FILE, OPTIONS_TEXT + "".join(f"{o}\n" for o in options))
    with contextlib.suppress(FileNotFoundError):
        STOPPED.unlink()
    wanted = {UNIT_DIR / f"{name}.d" / DROPIN: text for name, text in dropins(options).items()}
    changed = False
    if overrides(options):
        changed |= _write(UNIT_DIR / ENV_UNIT, ENV_UNIT_TEXT)
    else:
        changed |= _remove_unit(ENV_UNIT)
    if INTERRUPT in options:
        changed |= _write(UNIT_DIR / INTERRUPT_UNIT, INTERRUPT_UNIT_TEXT)
    else:
        changed |= _remove_unit(INTERRUPT_UNIT)
    for path in _all_dropins():
        if path not in wanted:
            path.unlink()
            changed = True
    for path, text in wanted.items():
        changed |= _write(path, text)
    return changed


def remove() -> bool:
    """No test stop: the bootstrap runs to the end. True when a drop-in was removed."""
    for path in (OPTIONS_FILE, STOPPED):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    found = _all_dropins()
    for path in found:
        path.unlink()
    removed = [_remove_unit(ENV_UNIT), _remove_unit(INTERRUPT_UNIT)]
    return any(removed) or bool(found)


def _remove_unit(name: str) -> bool:
    path = UNIT_DIR / name
    if not path.exists():
        return False
    path.unlink()
    return True


def env_values(path: Path = ENV) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            words = shlex.split(value)
            values[name] = words[0] if words else ""
    return values


def write_test_env(options: list[str]) -> None:
    """The env file with the options' values appended (the later assignment wins when it is sourced)."""
    extra = overrides(options)
    text = ENV.read_text().split(TEST_ENV_MARK, 1)[0] + TEST_ENV_MARK
    text += "".join(f"{name}={shlex.quote(value)}\n" for name, value in extra.items())
    TEST_ENV.parent.mkdir(parents=True, exist_ok=True)
    _write(TEST_ENV, text)


def stop_command(env: dict[str, str]) -> str:
    role = env.get("BAKE_ROLE", "")
    if role == "etcd":
        return "systemctl daemon-reload && systemctl restart kubelet"
    verb = "init" if role == "init" else "join"
    return f"kubeadm {verb} --config {env.get('BAKE_KUBEADM_CONFIG', '')}"


def log(message: str) -> None:
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} bake-test-stop[{os.getpid()}]: {message}\n"
    sys.stdout.write(line)
    sys.stdout.flush()
    with contextlib.suppress(OSError), LOG.open("a") as f:
        f.write(line)


def stop(point: str) -> int:
    """ExecCondition: 1 (skip this phase and, through STOPPED, those after it) at the stop, else 0."""
    options = read_options()
    mode = "after-waits" if "after-waits" in options else "before-waits"
    if point == "before-waits":
        with contextlib.suppress(FileNotFoundError):
            STOPPED.unlink()  # each run starts without a stale one
    extra = overrides(options)
    if extra:
        write_test_env(options)
    if mode == "after-waits" and point == "before-waits":
        bounds = (
            f", waits bounded to {extra['BAKE_WAIT_ENDPOINT_SECONDS']}s"
            if "BAKE_WAIT_ENDPOINT_SECONDS" in extra
            else ""
        )
        log(f"TEST: {OPTIONS_FILE} exists: test stop after-waits{bounds}")
        return 0
    command = stop_command(env_values())
    STOPPED.parent.mkdir(parents=True, exist_ok=True)
    STOPPED.write_text(command + "\n")
    log(f"TEST STOP ({mode}): {OPTIONS_FILE} exists; would now run: {command}")
    return 1


def kubeadm_pid(verb: str) -> int | None:
    """The running `kubeadm init|join` (not the bootstrap's `kubeadm version` or `reset`)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[0].endswith(b"kubeadm") and argv[1] == verb.encode():
            return int(proc.name)
    return None


def node_status(name: str) -> str | None:
    """The Node's Ready status as this node's kubelet sees it ("True", "False", "Unknown"), None if absent."""
    if not KUBELET_CONF.exists():
        return None
    jsonpath = '{.status.conditions[?(@.type=="Ready")].status}'
    argv = [KUBECTL, "--kubeconfig", str(KUBELET_CONF), "--request-timeout=10s", "get", "node", name,
            "-o", f"jsonpath={jsonpath}"]  # fmt: skip
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return None
    return (proc.stdout.strip() or "Unknown") if proc.returncode == 0 else None


def interrupt() -> int:
    """Kill the first `kubeadm init|join` after the kubelet registered this node.

    A join is frozen (SIGSTOP) the moment the kubelet has written kubelet.conf, since kubeadm join ends
    moments later, and killed once the Node is Ready: the state in which a plain retry of `kubeadm join`
    is refused. An init (kubelet.conf is baked) is killed once the Node exists."""
    if INTERRUPTED.exists():
        log(f"TEST: {INTERRUPTED} exists: kubeadm was interrupted once already; not again")
        return 0
    env = env_values()
    role, name = env.get("BAKE_ROLE", ""), env.get("BAKE_NODE_NAME", "")
    if role == "etcd":
        return 0
    verb = "init" if role == "init" else "join"
    deadline = time.monotonic() + INTERRUPT_WAIT_S
    pid = None
    while time.monotonic() < deadline:
        pid = kubeadm_pid(verb)
        registered = KUBELET_CONF.exists() if verb == "join" else node_status(name) is not None
        if pid is not None and registered:
            os.kill(pid, signal.SIGSTOP)
            break
        time.sleep(0.2 if verb == "join" else 2)
    else:
        log(f"TEST INTERRUPT: gave up: no kubeadm {verb} with {name} registered within {INTERRUPT_WAIT_S}s")
        return 1
    want = "True" if verb == "join" else None
    status = node_status(name)
    until = time.monotonic() + READY_WAIT_S
    while time.monotonic() < until and (status is None or (want is not None and status != want)):
        time.sleep(5)
        status = node_status(name)
    os.kill(pid, signal.SIGKILL)
    INTERRUPTED.parent.mkdir(parents=True, exist_ok=True)
    INTERRUPTED.write_text(f"{verb} {pid}\n")
    log(f"TEST INTERRUPT: killed kubeadm {verb} (pid {pid}) after node {name} registered (Ready: {status})")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["install"]:
        # --no-reload: for a caller whose systemd reads unit files afresh (the root sandbox's stand-in)
        reload = "--no-reload" not in argv
        changed = install([a for a in argv[1:] if a != "--no-reload"])
        if reload and changed and (UNIT_DIR / DRIVER).exists():
            subprocess.run(["systemctl", "daemon-reload"], check=False)
        return 0
    if argv == ["remove"]:
        if remove() and (UNIT_DIR / DRIVER).exists():
            subprocess.run(["systemctl", "daemon-reload"], check=False)
        return 0
    if len(argv) == 2 and argv[0] == "stop" and argv[1] in ("before-waits", "before-kubeadm"):
        return stop(argv[1])
    if argv == ["env"]:
        write_test_env(read_options())
        return 0
    if argv == ["interrupt"]:
        return interrupt()
    print(
        "usage: bake-test-stop install [--no-reload] [OPTION...] | remove"
        " | stop before-waits|before-kubeadm | env | interrupt",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception as e:  # 255: a failure for ExecCondition= (1..254 would skip the phase silently)
        print(f"bake-test-stop: {e!r}", file=sys.stderr)
        sys.exit(255)
