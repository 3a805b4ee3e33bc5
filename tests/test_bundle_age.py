"""The secrets bundle encrypted with age: what is sealed, that outputs never depend on the ciphertext,
that a bundle without its key is refused with nothing written, and interop with Debian's `age` CLI
both ways (the CLI opens what bake wrote; bake opens what the CLI wrote).

Expected values come from elsewhere: the names a sealed bundle must hold are derived by a rule written
here from the clear bundle's names, the clear bytes from the CLI or from a bake of a clear bundle.
"""

from __future__ import annotations

import base64
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyrage
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests import peers
from tests.helpers import REPO, tree_digest

PROFILE = "single-master"
CLUSTER = "single-master"
SECRET_NAMES = ("token", "encryption-key")  # besides every *.key


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m builder.cli ARGS` in `cwd`, stdin not a terminal (so nothing is ever asked)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BAKE_SECRETS_")}
    return subprocess.run(
        [sys.executable, "-m", "builder.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(REPO), **(env or {})},
    )


def bake(
    work: Path, out: str, secrets: str = "sec", *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run("-p", PROFILE, "-o", out, "--secrets", secrets, "-q", *extra, cwd=work, env=env)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def outputs(work: Path, out: str) -> dict[str, str]:
    return tree_digest((work / out / CLUSTER).resolve())


def x25519() -> tuple[str, Any]:
    """(recipient, identity file) made by the library, not by bake."""
    identity = pyrage.x25519.Identity.generate()
    return str(identity.to_public()), identity


def write_identity(path: Path, identity: object) -> Path:
    path.write_text(f"# test key\n{identity}\n")
    return path


@pytest.fixture(scope="module")
def clear(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clear bundle and the outputs baked from it (copied by each test that changes it)."""
    work = tmp_path_factory.mktemp("clear")
    done = bake(work, "out")
    assert done.returncode == 0, done.stderr
    return work


def copy_of(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def expected_sealed_names(clear_names: set[str]) -> set[str]:
    sealed = {n + ".age" if n.endswith(".key") or n in SECRET_NAMES else n for n in clear_names}
    return sealed | {"age-recipients"}


# --------------------------------------------------------------------------------------------------
# What bake writes


def test_new_bundle_sealed_every_secret_and_only_them(clear: Path, tmp_path: Path) -> None:
    recipient, identity = x25519()
    done = bake(tmp_path, "out", "sec", "--encrypt-to", recipient)
    assert done.returncode == 0, done.stderr
    sealed = tmp_path / "sec"
    names = set(snapshot(sealed))
    assert names == expected_sealed_names(set(snapshot(clear / "sec")))
    for rel, data in snapshot(sealed).items():
        if rel.endswith(".age"):
            assert data.startswith(b"age-encryption.org/v1\n-> X25519 "), rel
        else:
            assert b"PRIVATE KEY" not in data, rel
    token = pyrage.decrypt((sealed / "token.age").read_bytes(), [identity]).decode().strip()
    key = pyrage.decrypt((sealed / "encryption-key.age").read_bytes(), [identity]).strip()
    for rel, data in snapshot(sealed).items():
        assert token.encode() not in data and key not in data, rel
    assert (sealed / "age-recipients").read_text().splitlines()[-1] == recipient
    for p in [sealed, *sealed.rglob("*")]:
        assert p.stat().st_mode & 0o777 == (0o700 if p.is_dir() else 0o600), p


def test_outputs_never_depend_on_the_ciphertext(tmp_path: Path) -> None:
    r1, i1 = x25519()
    r2, i2 = x25519()
    id1, id2 = write_identity(tmp_path / "id1", i1), write_identity(tmp_path / "id2", i2)
    assert bake(tmp_path, "out1", "sec", "--encrypt-to", r1).returncode == 0
    first = snapshot(tmp_path / "sec")
    again = bake(tmp_path, "out2", "sec", "--identity", str(id1))
    assert again.returncode == 0, again.stderr
    assert snapshot(tmp_path / "sec") == first, "an unchanged bundle must not be re-encrypted"
    moved = run("secrets", "encrypt", "sec", "--to", r2, "--identity", str(id1), cwd=tmp_path)
    assert moved.returncode == 0, moved.stderr
    assert snapshot(tmp_path / "sec")["token.age"] != first["token.age"]
    assert bake(tmp_path, "out3", "sec", env={"BAKE_SECRETS_IDENTITY": str(id2)}).returncode == 0
    back = run("secrets", "decrypt", "sec", "--identity", str(id2), cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert not any(rel.endswith(".age") for rel in snapshot(tmp_path / "sec"))
    assert bake(tmp_path, "out4", "sec").returncode == 0
    reference = outputs(tmp_path, "out1")
    for out in ("out2", "out3", "out4"):
        assert outputs(tmp_path, out) == reference, out


def test_without_the_key_nothing_is_written(tmp_path: Path) -> None:
    recipient, _ = x25519()
    assert bake(tmp_path, "out", "sec", "--encrypt-to", recipient).returncode == 0
    before = (snapshot(tmp_path / "sec"), outputs(tmp_path, "out"))
    other = write_identity(tmp_path / "other", pyrage.x25519.Identity.generate())
    for extra in ((), ("--identity", str(other)), ("--rotate-token",)):
        done = bake(tmp_path, "out", "sec", *extra)
        assert done.returncode == 2, (extra, done.stderr)
        assert "sec/token.age" in done.stderr, done.stderr
        assert (snapshot(tmp_path / "sec"), outputs(tmp_path, "out")) == before
    plan = run("plan", "-p", PROFILE, "-o", "out", "--secrets", "sec", cwd=tmp_path)
    assert plan.returncode == 2 and "sec/token.age" in plan.stderr


def test_corrupted_age_file_named(tmp_path: Path) -> None:
    recipient, identity = x25519()
    key = write_identity(tmp_path / "key", identity)
    assert bake(tmp_path, "out", "sec", "--encrypt-to", recipient).returncode == 0
    target = tmp_path / "sec/pki/ca.key.age"
    data = bytearray(target.read_bytes())
    data[-5] ^= 0x01
    target.write_bytes(bytes(data))
    before = (snapshot(tmp_path / "sec"), outputs(tmp_path, "out"))
    done = bake(tmp_path, "out", "sec", "--identity", str(key))
    assert done.returncode == 2
    assert "sec/pki/ca.key.age: cannot decrypt: corrupted" in done.stderr, done.stderr
    assert (snapshot(tmp_path / "sec"), outputs(tmp_path, "out")) == before


def test_a_bake_never_converts_a_bundle(clear: Path, tmp_path: Path) -> None:
    work = copy_of(clear, tmp_path / "w")
    recipient, identity = x25519()
    before = snapshot(work / "sec")
    done = bake(work, "out", "sec", "--encrypt-to", recipient)
    assert done.returncode == 2 and "bake secrets encrypt" in done.stderr, done.stderr
    done = bake(work, "out", "sec", "--passphrase", env={"BAKE_SECRETS_PASSPHRASE": "x"})
    assert done.returncode == 2 and "bake secrets encrypt" in done.stderr, done.stderr
    assert snapshot(work / "sec") == before
    assert run("secrets", "encrypt", "sec", "--to", recipient, cwd=work).returncode == 0
    other, _ = x25519()
    key = write_identity(tmp_path / "key", identity)
    done = bake(work, "out", "sec", "--encrypt-to", other, "--identity", str(key))
    assert done.returncode == 2 and recipient in done.stderr, done.stderr


def test_passphrase_bundle(clear: Path, tmp_path: Path) -> None:
    env = {"BAKE_SECRETS_PASSPHRASE": "correct horse"}
    assert bake(tmp_path, "out1", "sec", "--passphrase", env=env).returncode == 0
    sealed = snapshot(tmp_path / "sec")
    assert set(sealed) == expected_sealed_names(set(snapshot(clear / "sec"))) | {"identity.age"}
    assert sealed["identity.age"].startswith(b"age-encryption.org/v1\n-> scrypt ")
    opened = pyrage.passphrase.decrypt(sealed["identity.age"], "correct horse").decode()
    own = pyrage.x25519.Identity.from_str(opened.strip().splitlines()[-1])
    assert str(own.to_public()) in sealed["age-recipients"].decode()
    assert b"PRIVATE KEY" in pyrage.decrypt(sealed["pki/ca.key.age"], [own])
    assert bake(tmp_path, "out2", "sec", env=env).returncode == 0
    assert outputs(tmp_path, "out2") == outputs(tmp_path, "out1")
    for wrong, needle in (
        ({}, "BAKE_SECRETS_PASSPHRASE"),
        ({"BAKE_SECRETS_PASSPHRASE": "x"}, "wrong passphrase"),
    ):
        started = time.monotonic()
        done = bake(tmp_path, "out2", "sec", env=wrong)
        assert done.returncode == 2 and "sec/identity.age" in done.stderr and needle in done.stderr, (
            done.stderr
        )
        assert time.monotonic() - started < 60  # not waiting for a terminal
    assert snapshot(tmp_path / "sec") == sealed


def test_ssh_ed25519_recipient(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    (tmp_path / "id_ed25519").write_bytes(private)
    assert bake(tmp_path, "out1", "sec", "--encrypt-to", public.decode()).returncode == 0
    assert (tmp_path / "sec/token.age").read_bytes().startswith(b"age-encryption.org/v1\n-> ssh-ed25519 ")
    done = bake(tmp_path, "out2", "sec", "--identity", "id_ed25519")
    assert done.returncode == 0, done.stderr
    assert outputs(tmp_path, "out2") == outputs(tmp_path, "out1")


def test_bad_recipient_refused(tmp_path: Path) -> None:
    done = bake(tmp_path, "out", "sec", "--encrypt-to", "age1nope")
    assert done.returncode == 2 and "age1nope" in done.stderr
    assert not (tmp_path / "sec").exists()


# --------------------------------------------------------------------------------------------------
# Interop with Debian's age CLI


def age_keygen(path: Path) -> str:
    subprocess.run([peers.program("age-keygen", "age"), "-o", str(path)], check=True, capture_output=True)
    return subprocess.run(
        [peers.program("age-keygen", "age"), "-y", str(path)], check=True, capture_output=True, text=True
    ).stdout.strip()


def on_tty(
    argv: list[str],
    prompt: bytes,
    answer: str,
    timeout: float,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Run `argv` on a pseudo-terminal (age reads passphrases from /dev/tty only; bake asks only on a
    terminal), answering every `prompt`; killed at `timeout`; (exit status, what it printed)."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        if cwd is not None:
            os.chdir(cwd)
        os.execve(argv[0], argv, env if env is not None else dict(os.environ))
    seen = b""
    answered = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        prompts = seen.lower().count(prompt)
        if prompts > answered:
            os.write(fd, answer.encode() + b"\n")
            answered = prompts
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


def age_on_tty(args: list[str], passphrase: str, timeout: float = 60) -> tuple[int, str]:
    """The age CLI on a pseudo-terminal, answering every passphrase prompt."""
    return on_tty([peers.program("age"), *args], b"passphrase", passphrase, timeout)


@pytest.mark.integration
def test_age_cli_decrypts_what_bake_wrote(tmp_path: Path) -> None:
    age = peers.program("age")
    recipient = age_keygen(tmp_path / "key.txt")
    assert bake(tmp_path, "out1", "sec", "--encrypt-to", recipient).returncode == 0
    copy = copy_of(tmp_path / "sec", tmp_path / "by-hand")
    for sealed in sorted(copy.rglob("*.age")):
        clear = sealed.with_name(sealed.name.removesuffix(".age"))
        subprocess.run(
            [age, "-d", "-i", str(tmp_path / "key.txt"), "-o", str(clear), str(sealed)], check=True
        )
        sealed.unlink()
    (copy / "age-recipients").unlink()
    # the bundle the CLI decrypted, baked in clear, gives the very same outputs: the bytes are the originals
    done = bake(tmp_path, "out2", "by-hand")
    assert done.returncode == 0, done.stderr
    assert outputs(tmp_path, "out2") == outputs(tmp_path, "out1")
    assert b"BEGIN" in (copy / "pki/ca.key").read_bytes()
    assert len(base64.b64decode((copy / "encryption-key").read_bytes())) == 32


@pytest.mark.integration
def test_age_cli_opens_a_passphrase_bundle(tmp_path: Path) -> None:
    env = {"BAKE_SECRETS_PASSPHRASE": "tr0ub4dor"}
    assert bake(tmp_path, "out", "sec", "--passphrase", env=env).returncode == 0
    sec = tmp_path / "sec"
    args = [
        "-d",
        "-i",
        str(sec / "identity.age"),
        "-o",
        str(tmp_path / "ca.key"),
        str(sec / "pki/ca.key.age"),
    ]
    status, said = age_on_tty(args, "tr0ub4dor")
    assert status == 0, said
    clear = run("secrets", "decrypt", "sec", cwd=tmp_path, env=env)
    assert clear.returncode == 0, clear.stderr
    assert (tmp_path / "ca.key").read_bytes() == (tmp_path / "sec/pki/ca.key").read_bytes()


def seal_with_cli(age: str, bundle: Path, recipient: str, header: str = "") -> None:
    """Encrypt the bundle's secret files with the age CLI, as an operator would by hand (README)."""
    for path in sorted(bundle.rglob("*")):
        if path.is_file() and (path.name.endswith(".key") or path.name in SECRET_NAMES):
            subprocess.run([age, "-r", recipient, "-o", f"{path}.age", str(path)], check=True)
            path.unlink()
    (bundle / "age-recipients").write_text(f"{header}{recipient}\n")


@pytest.mark.integration
def test_bake_reads_what_the_age_cli_wrote(clear: Path, tmp_path: Path) -> None:
    age = peers.program("age")
    recipient = age_keygen(tmp_path / "key.txt")
    work = copy_of(clear, tmp_path / "w")
    bundle = work / "sec"
    seal_with_cli(age, bundle, recipient)
    for path in bundle.rglob("*"):  # what `umask 077` would have given: bake wants every file 0600
        path.chmod(0o700 if path.is_dir() else 0o600)
    by_cli = snapshot(bundle)
    done = bake(work, "out2", "sec", "--identity", str(tmp_path / "key.txt"))
    assert done.returncode == 0, done.stderr
    assert outputs(work, "out2") == outputs(clear, "out")
    assert snapshot(bundle) == by_cli, "bake rewrote a bundle whose clear bytes did not change"


@pytest.mark.integration
def test_bake_reads_a_passphrase_identity_the_age_cli_wrote(clear: Path, tmp_path: Path) -> None:
    """The passphrase side: `age -p` (driven on a terminal) encrypts the bundle's identity file."""
    age = peers.program("age")
    recipient = age_keygen(tmp_path / "key.txt")
    work = copy_of(clear, tmp_path / "w")
    bundle = work / "sec"
    status, said = age_on_tty(["-p", "-o", str(bundle / "identity.age"), str(tmp_path / "key.txt")], "s3cret")
    assert status == 0, said
    seal_with_cli(age, bundle, recipient, "# the bundle's passphrase key (identity.age)\n")
    done = bake(work, "out2", "sec", env={"BAKE_SECRETS_PASSPHRASE": "s3cret"})
    assert done.returncode == 0, done.stderr
    assert outputs(work, "out2") == outputs(clear, "out")


@pytest.mark.integration
def test_cli_encrypted_bundle_with_wrong_identity_or_corruption(clear: Path, tmp_path: Path) -> None:
    age = peers.program("age")
    recipient = age_keygen(tmp_path / "key.txt")
    age_keygen(tmp_path / "wrong.txt")
    work = copy_of(clear, tmp_path / "w")
    bundle = work / "sec"
    seal_with_cli(age, bundle, recipient)
    before = (snapshot(bundle), outputs(work, "out"))
    done = bake(work, "out", "sec", "--identity", str(tmp_path / "wrong.txt"), "--rotate-token")
    assert done.returncode == 2
    assert "sec/token.age: cannot decrypt: none of the given identities" in done.stderr, done.stderr
    target = bundle / "nodes/cp-1/apiserver.key.age"
    target.write_bytes(target.read_bytes()[:-40])
    before = (snapshot(bundle), outputs(work, "out"))
    done = bake(work, "out", "sec", "--identity", str(tmp_path / "key.txt"), "--rotate-token")
    assert done.returncode == 2
    assert "sec/nodes/cp-1/apiserver.key.age: cannot decrypt: corrupted" in done.stderr, done.stderr
    assert (snapshot(bundle), outputs(work, "out")) == before


# --------------------------------------------------------------------------------------------------
# `bake check` of a sealed bundle: the keys `bake` takes


def check_json(work: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    tree = str((work / "out" / CLUSTER).resolve())
    done = run("check", tree, "--secrets", "sec", "--json", *args, cwd=work, env=env)
    return done.returncode, json.loads(done.stdout)


def bundle_not_after(bundle: Path) -> list[str]:
    """NotAfter of every certificate file of the bundle (clear in a sealed one too), read by openssl."""
    dates = []
    openssl = peers.program("openssl")
    for crt in sorted(bundle.rglob("*.crt")):
        argv = [openssl, "x509", "-noout", "-enddate", "-dateopt", "iso_8601", "-in", str(crt)]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        dates.append(out.strip().removeprefix("notAfter=").replace(" ", "T"))
    return sorted(dates)


def calendar_of_bundle(report: dict[str, Any]) -> list[str]:
    return sorted(e["notAfter"] for e in report["calendar"] if e["node"] == "bundle")


def errors_of(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(f["check"], f["where"], f["message"]) for f in report["findings"] if f["level"] == "error"]


@pytest.mark.integration
def test_bake_check_opens_a_sealed_bundle_with_bakes_identity_option(tmp_path: Path) -> None:
    recipient, identity = x25519()
    key = write_identity(tmp_path / "key", identity)
    assert bake(tmp_path, "out", "sec", "--encrypt-to", recipient).returncode == 0
    expected = bundle_not_after(tmp_path / "sec")
    assert len(expected) > 10
    for how, args, env in (
        ("--identity", ("--identity", str(key)), None),
        ("the environment", (), {"BAKE_SECRETS_IDENTITY": str(key)}),
    ):
        code, report = check_json(tmp_path, *args, env=env)
        assert code == 0 and errors_of(report) == [], (how, errors_of(report))
        assert calendar_of_bundle(report) == expected, how  # the bundle's certificates in the calendar
    # the text output says the same, and no finding names a file it could not open
    tree = str((tmp_path / "out" / CLUSTER).resolve())
    text = run("check", tree, "--secrets", "sec", "--identity", str(key), cwd=tmp_path)
    assert text.returncode == 0 and "cannot decrypt" not in text.stdout, text.stdout
    assert f"expiry calendar ({len(report['calendar'])} certificates" in text.stdout, text.stdout


@pytest.mark.integration
def test_bake_check_names_the_bundle_file_it_cannot_decrypt(tmp_path: Path) -> None:
    recipient, _ = x25519()
    assert bake(tmp_path, "out", "sec", "--encrypt-to", recipient).returncode == 0
    other = write_identity(tmp_path / "other", pyrage.x25519.Identity.generate())
    not_checked = "the bundle's keys and certificates were not checked, nor is it in the expiry calendar"
    for args, why in (
        ((), "encrypted with age, and no identity was given (--identity FILE or BAKE_SECRETS_IDENTITY)"),
        (("--identity", str(other)), "cannot decrypt: none of the given identities can open it"),
    ):
        code, report = check_json(tmp_path, *args)
        assert code == 1, report
        ((detector, where, message),) = errors_of(report)
        assert (detector, where) == ("bundle-invalid", "sec/token.age"), (detector, where)
        assert why in message and message.endswith(not_checked) and "written" not in message, message
        assert calendar_of_bundle(report) == []  # nothing of the bundle: only the seeds' certificates
        assert report["calendar"], "the seeds' certificates are still in the calendar"
    tree = str((tmp_path / "out" / CLUSTER).resolve())
    text = run("check", tree, "--secrets", "sec", "--identity", str(other), cwd=tmp_path)
    assert text.returncode == 1
    assert "error   sec/token.age: cannot decrypt: none of the given identities" in text.stdout, text.stdout


@pytest.mark.integration
def test_bake_check_opens_a_passphrase_bundle(tmp_path: Path) -> None:
    env = {"BAKE_SECRETS_PASSPHRASE": "correct horse"}
    assert bake(tmp_path, "out", "sec", "--passphrase", env=env).returncode == 0
    code, report = check_json(tmp_path, env=env)
    assert code == 0 and errors_of(report) == [], errors_of(report)
    assert calendar_of_bundle(report) == bundle_not_after(tmp_path / "sec")
    for wrong, needle in (
        ({}, "the bundle is encrypted with a passphrase: set BAKE_SECRETS_PASSPHRASE"),
        ({"BAKE_SECRETS_PASSPHRASE": "x"}, "cannot decrypt: wrong passphrase"),
    ):
        started = time.monotonic()
        code, report = check_json(tmp_path, env=wrong)
        assert time.monotonic() - started < 60  # stdin is no terminal: nothing is asked
        ((detector, where, message),) = errors_of(report)
        assert code == 1 and (detector, where) == ("bundle-invalid", "sec/identity.age"), report
        assert needle in message and message.endswith("nor is it in the expiry calendar"), message


# --------------------------------------------------------------------------------------------------
# the passphrase: one way to get it for every command (cli.common.bundle_keys), never on a command line


def bake_on_tty(args: list[str], cwd: Path, answer: str, timeout: float = 300) -> tuple[int, str]:
    """`python -m builder.cli ARGS` on a pseudo-terminal in `cwd` (no BAKE_SECRETS_* in its
    environment), answering each passphrase prompt."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAKE_SECRETS_")}
    env["PYTHONPATH"] = str(REPO)
    argv = [sys.executable, "-m", "builder.cli", *args]
    return on_tty(argv, b"passphrase for", answer, timeout, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def phrased(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle encrypted with a passphrase and its outputs (copied by each test that changes it)."""
    work = tmp_path_factory.mktemp("phrased")
    done = bake(work, "out", "sec", "--passphrase", env={"BAKE_SECRETS_PASSPHRASE": "n0t on argv"})
    assert done.returncode == 0, done.stderr
    return work


@pytest.mark.integration
def test_check_asks_for_the_passphrase_on_a_terminal_as_bake_does(phrased: Path, tmp_path: Path) -> None:
    work = copy_of(phrased, tmp_path / "w")
    tree = str((work / "out" / CLUSTER).resolve())
    code, said = bake_on_tty(["check", tree, "--secrets", "sec"], work, "n0t on argv")
    assert code == 0, said
    assert "passphrase for the secrets bundle sec: " in said
    assert "bundle consistent" in said and "cannot decrypt" not in said, said
    code, baked = bake_on_tty(["-p", PROFILE, "-o", "out", "--secrets", "sec", "-q"], work, "n0t on argv")
    assert code == 0, baked
    assert baked.count("passphrase for the secrets bundle sec: ") == said.count("passphrase for") == 1
    # a wrong answer: check names the file it could not open, the bundle is not judged
    tree = str((work / "out" / CLUSTER).resolve())  # the bake made a new generation
    code, wrong = bake_on_tty(["check", tree, "--secrets", "sec"], work, "wrong")
    assert code == 1 and "sec/identity.age: cannot decrypt: wrong passphrase" in wrong, wrong


@pytest.mark.integration
def test_passphrase_file_opens_the_bundle_for_every_command(phrased: Path, tmp_path: Path) -> None:
    work = copy_of(phrased, tmp_path / "w")
    pass_file = tmp_path / "pass"
    pass_file.write_text("n0t on argv\nthe second line is not part of it\n")
    with_file = ("--passphrase-file", str(pass_file))
    before = outputs(work, "out")
    done = bake(work, "out", "sec", *with_file)
    assert done.returncode == 0, done.stderr
    assert outputs(work, "out") == before
    plan = run("plan", "-p", PROFILE, "-o", "out", "--secrets", "sec", *with_file, cwd=work)
    assert plan.returncode == 0, plan.stdout + plan.stderr  # nothing would change
    code, report = check_json(work, *with_file)
    assert code == 0 and errors_of(report) == [], errors_of(report)
    assert calendar_of_bundle(report) == bundle_not_after(work / "sec")
    # the file wins over the environment; a wrong one is named
    wrong = tmp_path / "wrong"
    wrong.write_text("wrong\n")
    env = {"BAKE_SECRETS_PASSPHRASE": "n0t on argv"}
    code, report = check_json(work, "--passphrase-file", str(wrong), env=env)
    assert code == 1 and "cannot decrypt: wrong passphrase" in errors_of(report)[0][2], report
    (tmp_path / "empty").write_text("\n")
    bad_files = ((tmp_path / "missing", "passphrase file unreadable"), (tmp_path / "empty", "is empty"))
    for bad, needle in bad_files:
        done = bake(work, "out", "sec", "--passphrase-file", str(bad))
        assert done.returncode == 2 and str(bad) in done.stderr and needle in done.stderr, done.stderr
    for command in (["serve"], ["secrets", "encrypt"], ["secrets", "decrypt"], ["check"], ["plan"], []):
        helped = run(*command, "--help", cwd=work)
        assert "--passphrase-file PATH" in helped.stdout, command
    clear = run("secrets", "decrypt", "sec", *with_file, cwd=work)
    assert clear.returncode == 0, clear.stderr
    assert not list((work / "sec").rglob("*.age"))


@pytest.mark.integration
def test_a_passphrase_file_seals_what_the_age_cli_opens(tmp_path: Path) -> None:
    """A new bundle sealed with --passphrase-file: the real age CLI, asked that first line on a terminal,
    opens its identity.age, and that identity opens the bundle's files."""
    age = peers.program("age")
    pass_file = tmp_path / "pass"
    pass_file.write_text("line one\r\n")
    done = bake(tmp_path, "out", "sec", "--passphrase", "--passphrase-file", str(pass_file))
    assert done.returncode == 0, done.stderr
    sec = tmp_path / "sec"
    status, said = age_on_tty(["-d", "-o", str(tmp_path / "id.txt"), str(sec / "identity.age")], "line one")
    assert status == 0, said
    ca_key = subprocess.run([age, "-d", "-i", str(tmp_path / "id.txt"), str(sec / "pki/ca.key.age")],
                            capture_output=True, check=True).stdout  # fmt: skip
    assert b"PRIVATE KEY" in ca_key
