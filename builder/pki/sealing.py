"""The secrets bundle's private files as age files (age-encryption.org/v1), opened only in memory.

A sealed bundle keeps every private file (keys, the bootstrap token, the etcd encryption key) as
`<name>.age`, encrypted to every recipient listed in the clear file `age-recipients` (the format of
`age -R`); certificates, `sa.pub` and `bundle.json` stay clear, so a diff in git still tells what changed.
A passphrase does not encrypt each file with scrypt (a second of work per file, and an age file with a
passphrase can have no other recipient): it protects the bundle's own X25519 identity, `identity.age`
(an age passphrase-protected identity file, as `age -d -i identity.age` reads), whose recipient is one
more line of `age-recipients`. So a passphrase and `--encrypt-to` recipients combine.

The pipeline never sees ciphertext: `Reader` hands `secrets.load_bundle` the clear bytes, and
`recipients.layout` says what the bundle looks like on disk for a `Seal`. Age ciphertext is random, so
whether a bundle changed is judged on the clear bytes, and a bundle that did not change is not rewritten.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import pyrage

from ..errors import BakeError, Problem, SecretsError
from ..files import walk_files
from .recipients import (
    OWN_COMMENT,
    OWN_IDENTITY,
    RECIPIENTS,
    SUFFIX,
    OwnKey,
    Seal,
    normalised,
    parse_recipients,
)

ENV_IDENTITY = "BAKE_SECRETS_IDENTITY"
ENV_PASSPHRASE = "BAKE_SECRETS_PASSPHRASE"


Identity: TypeAlias = Any  # pyrage.x25519.Identity | pyrage.ssh.Identity


def parse_identities(data: bytes, where: str) -> list[Identity]:
    """An age identity file (AGE-SECRET-KEY-1... lines, # comments) or an unencrypted OpenSSH key."""
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            return [pyrage.ssh.Identity.from_buffer(data)]
        except pyrage.IdentityError as exc:
            raise SecretsError([Problem(where, f"not a usable SSH identity: {exc}")]) from None
    found: list[Identity] = []
    for number, raw in enumerate(data.decode(errors="replace").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            found.append(pyrage.x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            raise SecretsError(
                [Problem(f"{where}:{number}", "not an age identity (AGE-SECRET-KEY-1...)")]
            ) from None
    if not found:
        raise SecretsError([Problem(where, "holds no age identity (AGE-SECRET-KEY-1...)")])
    return found


@dataclass
class Keys:
    """What may open a sealed bundle: identity files, and a passphrase asked for only when needed."""

    identity_files: tuple[Path, ...] = ()
    prompt: bool = False
    """Ask on the terminal when $BAKE_SECRETS_PASSPHRASE is unset (only if stdin is one)."""
    passphrase_file: Path | None = None
    """--passphrase-file: the passphrase is its first line (before the environment and the terminal;
    never on the command line, where every user of the machine could read it)."""
    _passphrase: str | None = field(default=None, repr=False)
    _identities: list[Identity] | None = field(default=None, repr=False)

    @classmethod
    def from_env(
        cls, identity_files: Sequence[Path] = (), *, prompt: bool = False, passphrase_file: Path | None = None
    ) -> Keys:
        """--identity files, else $BAKE_SECRETS_IDENTITY (the passphrase is read when needed)."""
        files = tuple(identity_files)
        if not files and os.environ.get(ENV_IDENTITY):
            files = (Path(os.environ[ENV_IDENTITY]),)
        return cls(files, prompt, passphrase_file)

    def identities(self) -> list[Identity]:
        if self._identities is None:
            found: list[Identity] = []
            for path in self.identity_files:
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    raise SecretsError(
                        [Problem(str(path), f"identity file unreadable: {exc.strerror}")]
                    ) from None
                found += parse_identities(data, str(path))
            self._identities = found
        return self._identities

    def passphrase(self, why: str) -> str | None:
        """The passphrase of an existing bundle (asked once)."""
        if self._passphrase is None:
            self._passphrase = env_or_prompt(why, prompt=self.prompt, file=self.passphrase_file)
        return self._passphrase

    def new_passphrase(self, why: str) -> str | None:
        """The passphrase a bundle is to be encrypted with (asked twice on a terminal)."""
        return env_or_prompt(why, prompt=self.prompt, confirm=True, file=self.passphrase_file)


def read_passphrase_file(path: Path) -> str:
    """The first line of a passphrase file (age's and openssl's `file:` convention), without its line
    end; an unreadable or empty one is an error naming it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BakeError([Problem(str(path), f"passphrase file unreadable: {exc.strerror}")]) from None
    try:
        line = data.decode().splitlines()[0] if data else ""
    except UnicodeDecodeError:
        raise BakeError([Problem(str(path), "passphrase file is not UTF-8 text")]) from None
    if not line:
        raise BakeError([Problem(str(path), "passphrase file: its first line is empty")])
    return line


def env_or_prompt(why: str, *, prompt: bool, confirm: bool = False, file: Path | None = None) -> str | None:
    """--passphrase-file, else $BAKE_SECRETS_PASSPHRASE, else the terminal's answer (twice when
    `confirm`), else None. Every command that opens a bundle gets it from here (cli.common.bundle_keys)."""
    if file is not None:
        return read_passphrase_file(file)
    env = os.environ.get(ENV_PASSPHRASE)
    if env is not None:
        return env
    if not prompt or not sys.stdin.isatty():
        return None
    first = getpass.getpass(f"passphrase for {why}: ")
    if confirm and getpass.getpass("again: ") != first:
        raise BakeError([Problem(ENV_PASSPHRASE, "the two passphrases differ")])
    return first


def _undecryptable(path: Path, exc: Exception, outcome: str) -> SecretsError:
    if "No matching keys" in str(exc):
        why = "none of the given identities can open it (wrong --identity / BAKE_SECRETS_IDENTITY?)"
    else:
        why = f"corrupted or not an age file ({exc})"
    return SecretsError([Problem(str(path), f"cannot decrypt: {why}; {outcome}")])


class Reader:
    """Reads a bundle's files in clear: `<name>.age` decrypted in memory, other files as they are.

    `outcome` ends every message about a file it cannot open: what the command did about it (a bake
    wrote nothing; `bake check` did not check the bundle)."""

    def __init__(self, root: Path, keys: Keys, outcome: str = "nothing was written") -> None:
        self.root = root
        self.keys = keys
        self.outcome = outcome
        self._own: list[Identity] | None = None

    def own_identity(self) -> list[Identity]:
        """The bundle's passphrase key, opened (the passphrase is asked for once); [] without one."""
        if self._own is not None:
            return self._own
        path = self.root / OWN_IDENTITY
        if not path.exists():
            self._own = []
            return self._own
        passphrase = self.keys.passphrase(f"the secrets bundle {self.root}")
        if passphrase is None:
            raise SecretsError(
                [
                    Problem(
                        str(path),
                        f"the bundle is encrypted with a passphrase: set {ENV_PASSPHRASE}, give "
                        f"--passphrase-file, run on a terminal to be asked, or give an --identity; "
                        f"{self.outcome}",
                    )
                ]
            )
        try:
            clear = pyrage.passphrase.decrypt(path.read_bytes(), passphrase)
        except pyrage.DecryptError as exc:
            raise SecretsError(
                [
                    Problem(
                        str(path),
                        f"cannot decrypt: wrong passphrase or corrupted file ({exc}); {self.outcome}",
                    )
                ]
            ) from None
        self._own = parse_identities(bytes(clear), str(path))
        return self._own

    def decrypt(self, path: Path, data: bytes) -> bytes:
        """The clear bytes of the age file `path` holding `data`: with the --identity keys, else (none
        given, or none a recipient) with the bundle's passphrase key."""
        given = self.keys.identities()
        failure: Exception | None = None
        if given:
            try:
                return bytes(pyrage.decrypt(data, given))
            except pyrage.DecryptError as exc:
                failure = exc
                if "No matching keys" not in str(exc) or not (self.root / OWN_IDENTITY).exists():
                    raise _undecryptable(path, exc, self.outcome) from None
        try:
            own = self.own_identity()
        except SecretsError as exc:
            if failure is None:
                raise
            raise SecretsError(
                [
                    Problem(str(path), "cannot decrypt: none of the given identities can open it"),
                    *exc.problems,
                ]
            ) from None
        if not own:
            if failure is not None:
                raise _undecryptable(path, failure, self.outcome)
            raise SecretsError(
                [
                    Problem(
                        str(path),
                        f"encrypted with age, and no identity was given (--identity FILE or {ENV_IDENTITY}); "
                        + self.outcome,
                    )
                ]
            )
        try:
            return bytes(pyrage.decrypt(data, own))
        except pyrage.DecryptError as exc:
            raise _undecryptable(path, exc, self.outcome) from None

    def __call__(self, path: Path) -> bytes:
        """The clear bytes of `path` (FileNotFoundError when neither it nor `path.age` exists).
        By plain open: a bake reads every file of the bundle, thousands with a large fleet."""
        name = os.fspath(path)
        try:
            with open(name + SUFFIX, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            with open(name, "rb") as fh:
                return fh.read()
        sealed = path.with_name(path.name + SUFFIX)
        if os.path.exists(name):
            raise SecretsError([Problem(str(path), f"both {path.name} and {sealed.name} exist; remove one")])
        return self.decrypt(sealed, data)

    def sealed(self) -> bool:
        """The bundle holds age files (or says whom they are for): it is not in clear."""
        return (
            (self.root / RECIPIENTS).exists()
            or (self.root / OWN_IDENTITY).exists()
            or any(rel.endswith(SUFFIX) for rel, _ in walk_files(str(self.root)))
        )

    def seal(self) -> Seal | None:
        """How the bundle is sealed now; None when it is in clear."""
        if not self.sealed():
            return None
        path = self.root / RECIPIENTS
        listed, mine = parse_recipients(path.read_bytes(), str(path)) if path.exists() else ([], None)
        own_file = self.root / OWN_IDENTITY
        if own_file.exists() and mine is None:
            raise SecretsError(
                [Problem(str(path), f"does not name the recipient of {OWN_IDENTITY} (after {OWN_COMMENT!r})")]
            )
        own = OwnKey(mine, own_file.read_bytes()) if mine is not None and own_file.exists() else None
        if mine is not None and own is None:
            listed.append(mine)
        return Seal(normalised(listed), own)

    def clear_files(self) -> list[tuple[str, bytes, int]]:
        """Every file of the bundle in clear (rel path without .age, bytes, 0600), seal files left out."""
        out = []
        for p in sorted(self.root.rglob("*")):
            rel = str(p.relative_to(self.root))
            if not p.is_file() or rel in (RECIPIENTS, OWN_IDENTITY):
                continue
            if rel.endswith(SUFFIX):
                out.append((rel.removesuffix(SUFFIX), self.decrypt(p, p.read_bytes()), 0o600))
            else:
                out.append((rel, p.read_bytes(), 0o600))
        return out


def wanted(
    current: Seal | None,
    exists: bool,
    recipients: Sequence[str],
    passphrase: bool,
    where: Path,
    keys: Keys,
) -> Seal | None:
    """The seal a bake writes the bundle with. Sealing or unsealing an existing bundle, or changing its
    recipients, is `bake secrets encrypt|decrypt`'s job: a bake never does it as a side effect."""
    if not exists:
        if not recipients and not passphrase:
            return None
        phrase = None
        if passphrase:
            phrase = keys.new_passphrase(f"the new secrets bundle {where}")
            if phrase is None:
                raise BakeError(
                    [
                        Problem(
                            "--passphrase",
                            f"give --passphrase-file, set {ENV_PASSPHRASE} or run on a terminal to be asked",
                        )
                    ]
                )
        return Seal.new(recipients, phrase)
    hint = f"`bake secrets encrypt {where} ...` changes how an existing bundle is encrypted"
    if current is None:
        if recipients or passphrase:
            raise BakeError(
                [
                    Problem(
                        "--encrypt-to" if recipients else "--passphrase",
                        f"the bundle at {where} is in clear; {hint}",
                    )
                ]
            )
        return None
    if recipients and normalised(recipients) != current.recipients:
        listed = ", ".join(current.recipients) or "no recipient"
        raise BakeError([Problem("--encrypt-to", f"the bundle at {where} is encrypted to {listed}; {hint}")])
    if passphrase and current.own is None:
        raise BakeError([Problem("--passphrase", f"the bundle at {where} has no passphrase; {hint}")])
    if not current.recipients and current.own is None:
        raise BakeError(
            [
                Problem(
                    str(where / RECIPIENTS),
                    "the bundle holds age files but does not say whom they are encrypted to: list the "
                    "recipients there, one a line (or re-encrypt it with `bake secrets encrypt`)",
                )
            ]
        )
    return current
