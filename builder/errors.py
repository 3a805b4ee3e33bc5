"""Errors that carry a field path, so bad input is reported as `nodes[2].ip: ...`, never a traceback."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the input, located by its dotted path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class BakeError(Exception):
    """A failure the user can act on; the CLI prints it and exits 2."""

    exit_code = 2

    def __init__(self, problems: Iterable[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ProfileError(BakeError):
    """The profile (or a --set override) is invalid."""


class SecretsError(BakeError):
    """The secrets bundle is missing, corrupt, inconsistent or would need an explicit rotation."""


class OutputError(BakeError):
    """An output tree could not be written or does not match what was baked."""
