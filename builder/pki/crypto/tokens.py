"""Bootstrap tokens ("<6>.<16>" from [a-z0-9]), drawn without modulo bias."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

TOKEN_RE: re.Pattern[str] = re.compile(r"\A([a-z0-9]{6})\.([a-z0-9]{16})\Z")
_TOKEN_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz"
_TOKEN_LIMIT = 252  # 7 * 36: bytes >= 252 would bias the modulo, so they are discarded


def _token_chars(n: int, randbytes: Callable[[int], bytes]) -> str:
    out: list[str] = []
    while len(out) < n:
        for b in randbytes(n - len(out)):
            if b < _TOKEN_LIMIT:
                out.append(_TOKEN_CHARS[b % 36])
    return "".join(out)


def generate_token(randbytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """Bootstrap token "<6>.<16>" from [a-z0-9]; `randbytes` is injectable only for tests."""
    return f"{_token_chars(6, randbytes)}.{_token_chars(16, randbytes)}"
