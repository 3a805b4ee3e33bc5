#!/usr/bin/python3
"""In-guest checks for the bake VM harness: expectations JSON (built on the host) -> results JSON.

Travels on the per-run `baketest` ISO next to `expectations.json`, so changing a check never needs a new
image. Runs on the guest's Debian 12 python3 with the standard library only.

    python3 check.py expectations.json   ->  stdout: {"checks": [{"name", "kind", "ok", "detail"}, ...]}

expectations.json is `{"checks": [ {"kind": K, ...}, ... ]}`; checks run in order. Keys every check takes:
  name      label in the results (default: kind + main argument)
  wait_s    retry until ok or this many seconds passed (default 0: one try); the pause between tries
            doubles from 1 s to at most 10 s, so a long wait does not load a slow guest with kubectl runs
  boots     only run on these boot numbers (env BAKE_TEST_BOOT); skipped checks report ok
Kinds (see KINDS below, and tests/vm/expect.py for the host-side builders): file, absent, glob_absent,
only_files, hostname, address, module, sysctl, swap_off, unit, command, unit_verify, tcp, kubelet_standin.
"""

from __future__ import annotations

import fnmatch
import grp
import hashlib
import json
import os
import pwd
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_DETAIL = 1500
Check = dict[str, Any]
Outcome = tuple[bool, str]


def _clip(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else "..." + text[-MAX_DETAIL:]


def _run(argv: list[str] | str, timeout: float, env: dict[str, str] | None = None) -> tuple[int, str]:
    """rc and combined output; a timeout is rc 124 like timeout(1)."""
    try:
        proc = subprocess.run(
            argv,
            shell=isinstance(argv, str),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=None if env is None else {**os.environ, **env},
        )
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout} s"
    except OSError as e:
        return 127, str(e)
    return proc.returncode, proc.stdout + proc.stderr


def _mode(value: str | int) -> int:
    return int(value, 8) if isinstance(value, str) else value


def check_file(c: Check) -> Outcome:
    path = c["path"]
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False, f"{path} does not exist"
    problems: list[str] = []
    kind = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink"}.get(
        stat.S_IFMT(st.st_mode), "other"
    )
    want_type = c.get("type", "file")
    if kind != want_type:
        problems.append(f"is a {kind}, want {want_type}")
    if "mode" in c and stat.S_IMODE(st.st_mode) != _mode(c["mode"]):
        problems.append(f"mode {stat.S_IMODE(st.st_mode):04o}, want {_mode(c['mode']):04o}")
    if "owner" in c:
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        if str(c["owner"]) not in (owner, str(st.st_uid)):
            problems.append(f"owner {owner}, want {c['owner']}")
    if "group" in c:
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        if str(c["group"]) not in (group, str(st.st_gid)):
            problems.append(f"group {group}, want {c['group']}")
    if kind == "symlink" and "target" in c and os.readlink(path) != c["target"]:
        problems.append(f"points to {os.readlink(path)}, want {c['target']}")
    if kind == "file" and ("sha256" in c or "contains" in c or "not_contains" in c):
        data = Path(path).read_bytes()
        if "sha256" in c and hashlib.sha256(data).hexdigest() != c["sha256"].lower():
            problems.append(f"sha256 {hashlib.sha256(data).hexdigest()}, want {c['sha256']}")
        text = data.decode(errors="replace")
        for needle in _as_list(c.get("contains")):
            if needle not in text:
                problems.append(f"does not contain {needle!r}")
        for needle in _as_list(c.get("not_contains")):
            if needle in text:
                problems.append(f"contains {needle!r}")
    if problems:
        return False, f"{path}: " + "; ".join(problems)
    return True, f"{path}: {kind} {stat.S_IMODE(st.st_mode):04o} uid={st.st_uid} gid={st.st_gid}"


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def check_absent(c: Check) -> Outcome:
    exists = os.path.lexists(c["path"])
    return not exists, f"{c['path']} {'exists' if exists else 'is absent'}"


def check_glob_absent(c: Check) -> Outcome:
    """No file under root whose name (or root-relative path, if the pattern has a '/') matches."""
    root, pattern = c["root"], c["pattern"]
    hits: list[str] = []
    if os.path.isdir(root):
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                full = os.path.join(dirpath, name)
                subject = os.path.relpath(full, root) if "/" in pattern else name
                if fnmatch.fnmatchcase(subject, pattern):
                    hits.append(full)
    if hits:
        return False, f"{len(hits)} match {pattern!r} under {root}: {', '.join(sorted(hits)[:20])}"
    return True, f"nothing matches {pattern!r} under {root}"


def check_only_files(c: Check) -> Outcome:
    """The files (non-directories) under root are exactly `paths`: nothing missing, nothing extra."""
    root, want = c["root"], set(c["paths"])
    have: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        have.update(os.path.join(dirpath, n) for n in filenames)
        have.update(os.path.join(dirpath, n) for n in dirnames if os.path.islink(os.path.join(dirpath, n)))
    extra, missing = sorted(have - want), sorted(want - have)
    if extra or missing:
        return False, f"under {root}: unexpected {extra[:30]}; missing {missing[:30]}"
    return True, f"under {root}: exactly the {len(want)} expected files"


def check_hostname(c: Check) -> Outcome:
    name = socket.gethostname()
    return name == c["equals"], f"hostname is {name!r}"


def check_address(c: Check) -> Outcome:
    """An interface with this MAC carries this address (prefix checked when given), and is UP."""
    rc, out = _run(["ip", "-j", "addr", "show"], 30)
    if rc != 0:
        return False, f"ip addr failed: {out}"
    mac = c["mac"].lower()
    want_ip, _, want_prefix = c["address"].partition("/")
    for link in json.loads(out):
        if str(link.get("address", "")).lower() != mac:
            continue
        addrs = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])]
        found = any(
            a["local"] == want_ip and (not want_prefix or str(a["prefixlen"]) == want_prefix)
            for a in link.get("addr_info", [])
        )
        up = "UP" in link.get("flags", [])
        name = link.get("ifname")
        if "ifname" in c and name != c["ifname"]:
            return False, f"MAC {mac} is on {name}, want {c['ifname']} (addresses {addrs})"
        if not found:
            return False, f"{name} ({mac}) has {addrs}, not {c['address']}"
        if not up and c.get("up", True):
            return False, f"{name} ({mac}) has {c['address']} but is not UP"
        return True, f"{name} ({mac}) has {addrs}"
    return False, f"no interface with MAC {mac}"


def check_module(c: Check) -> Outcome:
    name = c["module"].replace("-", "_")
    loaded = {line.split()[0] for line in Path("/proc/modules").read_text().splitlines() if line.strip()}
    if name in loaded:
        return True, f"{name} is loaded"
    builtin = Path(f"/lib/modules/{os.uname().release}/modules.builtin")
    if builtin.exists() and c.get("builtin_ok", True):
        names = {Path(p).name.removesuffix(".ko").replace("-", "_") for p in builtin.read_text().split()}
        if name in names:
            return True, f"{name} is built into the kernel"
    return False, f"{name} is not loaded"


def check_sysctl(c: Check) -> Outcome:
    key = c["key"]
    path = Path("/proc/sys") / key.replace(".", "/")
    try:
        value = " ".join(path.read_text().split())
    except OSError as e:
        return False, f"{key}: {e.strerror}"
    want = " ".join(str(c["equals"]).split())
    return value == want, f"{key} = {value}"


def check_swap_off(c: Check) -> Outcome:
    lines = [ln for ln in Path("/proc/swaps").read_text().splitlines()[1:] if ln.strip()]
    return not lines, "no swap" if not lines else "swap in use: " + "; ".join(lines)


def check_unit(c: Check) -> Outcome:
    unit = c["unit"]
    props: dict[str, str] = dict(c.get("properties", {}))
    if "active" in c:
        props.setdefault("ActiveState", "active" if c["active"] else "inactive")
    if "enabled" in c:
        props.setdefault("UnitFileState", "enabled" if c["enabled"] else "disabled")
    names = sorted({*props, "LoadState", "ActiveState", "SubState", "Result"})
    _, out = _run(["systemctl", "show", unit, *(f"--property={p}" for p in names)], 30)
    got = dict(line.partition("=")[::2] for line in out.splitlines() if "=" in line)
    bad = [f"{k}={got.get(k)!r} (want {v!r})" for k, v in props.items() if got.get(k) != str(v)]
    summary = f"{unit}: " + " ".join(f"{k}={got.get(k, '')}" for k in names)
    if bad:
        return False, summary + "; " + ", ".join(bad)
    return True, summary


def check_command(c: Check) -> Outcome:
    """`argv` (list) or `shell` (string); rc must equal `rc` (default 0; null = any)."""
    cmd: list[str] | str = c["argv"] if "argv" in c else c["shell"]
    rc, out = _run(cmd, float(c.get("timeout", 60)), c.get("env"))
    problems = []
    want_rc = c.get("rc", 0)
    if want_rc is not None and rc != want_rc:
        problems.append(f"exit {rc}, want {want_rc}")
    for needle in _as_list(c.get("contains")):
        if needle not in out:
            problems.append(f"output lacks {needle!r}")
    for needle in _as_list(c.get("not_contains")):
        if needle in out:
            problems.append(f"output has {needle!r}")
    if "regex" in c and not re.search(c["regex"], out, re.M):
        problems.append(f"output does not match /{c['regex']}/")
    head = "; ".join(problems) if problems else f"exit {rc}"
    room = max(200, MAX_DETAIL - len(head))
    text = out.strip()
    return not problems, f"{head}; output: " + (text if len(text) <= room else "..." + text[-room:])


def check_unit_verify(c: Check) -> Outcome:
    """`systemd-analyze verify`; fails on a non-zero exit or any message about the unit itself (its drop-ins
    included), except messages matching one of the `allow` regexes (known, reported findings)."""
    unit = c["unit"]
    path = unit
    if not unit.startswith("/"):
        _, out = _run(["systemctl", "show", unit, "--property=FragmentPath", "--value"], 30)
        path = out.strip() or unit
    rc, out = _run(["systemd-analyze", "verify", path], float(c.get("timeout", 60)))
    base = os.path.basename(path)
    allowed = [re.compile(a) for a in c.get("allow", [])]
    own = [ln for ln in out.splitlines() if base in ln and not any(a.search(ln) for a in allowed)]
    ok = rc == 0 and (not own or not c.get("strict", True))
    return ok, _clip(f"systemd-analyze verify {path}: exit {rc}; {out.strip() or 'no messages'}")


def check_tcp(c: Check) -> Outcome:
    host, port = c.get("host", "127.0.0.1"), int(c["port"])
    try:
        with socket.create_connection((host, port), timeout=float(c.get("timeout", 5))):
            return True, f"{host}:{port} accepts connections"
    except OSError as e:
        return False, f"{host}:{port}: {e}"


def check_kubelet_standin(c: Check) -> Outcome:
    """Start kubelet-standin (TEST DOUBLE) for a static pod manifest as a transient unit."""
    unit = c.get("unit", "kubelet-standin")
    manifest = c.get("manifest", "/etc/kubernetes/manifests/etcd.yaml")
    extra = [str(x) for x in c.get("args", [])]
    argv = ["systemd-run", f"--unit={unit}", "--collect", "/usr/local/sbin/kubelet-standin", *extra, manifest]
    rc, out = _run(argv, 60)
    if rc != 0:
        return False, f"systemd-run failed: {out}"
    ready = c.get("ready_port")
    if ready is None:
        return True, f"started {unit}: {out.strip()}"
    deadline = time.monotonic() + float(c.get("ready_timeout", 90))
    while time.monotonic() < deadline:
        ok, _ = check_tcp({"port": ready, "host": c.get("ready_host", "127.0.0.1")})
        if ok:
            return True, f"{unit} listening on port {ready}"
        _, state = _run(["systemctl", "is-active", unit], 10)
        if state.strip() in ("failed", "inactive"):
            break
        time.sleep(1)
    _, journal = _run(["journalctl", "-u", unit, "--no-pager", "-n", "40", "-o", "cat"], 30)
    return False, _clip(f"{unit} not listening on {ready}: {journal}")


MAX_RETRY_PAUSE_S = 10

KINDS: dict[str, tuple[Callable[[Check], Outcome], str]] = {
    "file": (check_file, "path"),
    "absent": (check_absent, "path"),
    "glob_absent": (check_glob_absent, "pattern"),
    "only_files": (check_only_files, "root"),
    "hostname": (check_hostname, "equals"),
    "address": (check_address, "address"),
    "module": (check_module, "module"),
    "sysctl": (check_sysctl, "key"),
    "swap_off": (check_swap_off, ""),
    "unit": (check_unit, "unit"),
    "command": (check_command, "argv"),
    "unit_verify": (check_unit_verify, "unit"),
    "tcp": (check_tcp, "port"),
    "kubelet_standin": (check_kubelet_standin, "manifest"),
}


def default_name(c: Check) -> str:
    kind = str(c.get("kind"))
    key = KINDS.get(kind, (None, ""))[1]
    arg = c.get(key, c.get("shell", "")) if key else ""
    if isinstance(arg, list):
        arg = " ".join(str(a) for a in arg)
    if kind == "glob_absent":
        arg = f"{c.get('root')}/{arg}"
    return f"{kind} {arg}".strip()


def run_check(c: Check, boot: int) -> dict[str, Any]:
    name = str(c.get("name") or default_name(c))
    kind = str(c.get("kind"))
    if "boots" in c and boot not in c["boots"]:
        return {"name": name, "kind": kind, "ok": True, "skipped": True, "detail": f"not run on boot {boot}"}
    if kind not in KINDS:
        return {"name": name, "kind": kind, "ok": False, "detail": f"unknown check kind {kind!r}"}
    fn = KINDS[kind][0]
    deadline = time.monotonic() + float(c.get("wait_s", 0))
    tries = 0
    while True:
        tries += 1
        try:
            ok, detail = fn(c)
        except Exception as e:  # a broken check is a failed check, never a crashed run
            ok, detail = False, f"{type(e).__name__}: {e}"
        if ok or time.monotonic() >= deadline:
            break
        time.sleep(min(2 ** (tries - 1), MAX_RETRY_PAUSE_S))
    result: dict[str, Any] = {"name": name, "kind": kind, "ok": ok, "detail": _clip(detail)}
    if tries > 1:
        result["tries"] = tries
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check.py EXPECTATIONS.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    boot = int(os.environ.get("BAKE_TEST_BOOT", "1"))
    results = [run_check(c, boot) for c in spec.get("checks", [])]
    json.dump({"checks": results}, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
