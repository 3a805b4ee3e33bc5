"""How a sealed bundle is written: whom its age files are encrypted to (`age-recipients`), its own
passphrase key (`identity.age`), and each file's name on disk (sealing.py says why it is so)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

import pyrage

from ..errors import BakeError, Problem

SUFFIX = ".age"
RECIPIENTS = "age-recipients"
OWN_IDENTITY = "identity.age"


OWN_COMMENT = "# the bundle's passphrase key (identity.age)"


Recipient: TypeAlias = Any  # pyrage.x25519.Recipient | pyrage.ssh.Recipient (pyrage ships no types)


def parse_recipient(text: str, where: str = "--encrypt-to") -> Recipient:
    """An X25519 (`age1...`) or SSH (`ssh-ed25519 ...`, `ssh-rsa ...`) recipient; BakeError if neither."""
    text = text.strip()
    try:
        if text.startswith("ssh-"):
            return pyrage.ssh.Recipient.from_str(text)
        return pyrage.x25519.Recipient.from_str(text)
    except pyrage.RecipientError as exc:
        raise BakeError(
            [Problem(where, f"{text!r} is not an age recipient (age1... or ssh-ed25519 ...): {exc}")]
        ) from None


@dataclass(frozen=True)
class OwnKey:
    """The bundle's own X25519 key: its recipient, and `identity.age` (its identity encrypted with the
    passphrase, opened only when no --identity opens the files)."""

    recipient: str
    sealed: bytes

    @classmethod
    def new(cls, passphrase: str) -> OwnKey:
        identity = pyrage.x25519.Identity.generate()
        sealed = bytes(pyrage.passphrase.encrypt(_identity_file(identity), passphrase))
        return cls(str(identity.to_public()), sealed)


def _identity_file(identity: pyrage.x25519.Identity) -> bytes:
    return f"# bake secrets bundle key\n# public key: {identity.to_public()}\n{identity}\n".encode()


@dataclass(frozen=True)
class Seal:
    """How a bundle's private files are written: to these recipients, and to its own passphrase key."""

    recipients: tuple[str, ...] = ()
    own: OwnKey | None = None

    @classmethod
    def new(cls, recipients: Iterable[str], passphrase: str | None) -> Seal:
        return cls(normalised(recipients), OwnKey.new(passphrase) if passphrase is not None else None)

    def all_recipients(self) -> list[Recipient]:
        extra = [self.own.recipient] if self.own is not None else []
        return [parse_recipient(r, RECIPIENTS) for r in [*self.recipients, *extra]]

    def recipients_text(self) -> bytes:
        lines = ["# age recipients of every *.age file of this bundle (`age -R age-recipients` reads it)"]
        lines += list(self.recipients)
        if self.own is not None:
            lines += [OWN_COMMENT, self.own.recipient]
        return ("\n".join(lines) + "\n").encode()

    def encrypt(self, data: bytes) -> bytes:
        return bytes(pyrage.encrypt(data, self.all_recipients()))

    def describe(self) -> str:
        parts = [*self.recipients, *(["a passphrase"] if self.own is not None else [])]
        return "age, to " + ", ".join(parts)


def normalised(recipients: Iterable[str]) -> tuple[str, ...]:
    """One spelling per recipient, sorted: the same set always gives the same age-recipients file."""
    seen = {" ".join(r.split()) for r in recipients}
    for r in seen:
        parse_recipient(r)
    return tuple(sorted(seen))


def parse_recipients(data: bytes, where: str) -> tuple[list[str], str | None]:
    """(the operator's recipients, the passphrase key's) listed in an age-recipients file."""
    listed: list[str] = []
    mine: str | None = None
    marked = False
    for raw in data.decode(errors="replace").splitlines():
        line = raw.strip()
        if line == OWN_COMMENT:
            marked = True
        elif line and not line.startswith("#"):
            parse_recipient(line, where)
            if marked and mine is None:
                mine = line
            else:
                listed.append(line)
    return listed, mine


def same_recipients(a: bytes, b: bytes) -> bool:
    """Two age-recipients files naming the same keys (comments and order aside: a file written by hand
    does not make bake re-encrypt a bundle)."""
    (la, ma), (lb, mb) = parse_recipients(a, RECIPIENTS), parse_recipients(b, RECIPIENTS)
    return (normalised(la), ma) == (normalised(lb), mb)


def layout(
    files: Iterable[tuple[str, bytes, int]], seal: Seal | None, secret: Callable[[str], bool]
) -> list[tuple[str, bytes, int, bool]]:
    """(path on disk, clear bytes, mode, encrypted) of a bundle written with `seal` (None: in clear)."""
    out = []
    for rel, data, mode in files:
        sealed = seal is not None and secret(rel)
        out.append((rel + SUFFIX if sealed else rel, data, mode, sealed))
    if seal is not None:
        out.append((RECIPIENTS, seal.recipients_text(), 0o600, False))
        if seal.own is not None:
            out.append((OWN_IDENTITY, seal.own.sealed, 0o600, False))
    return out
