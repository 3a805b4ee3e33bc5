"""`bake` command line: which sub-command runs, exit codes, errors printed.

Exit codes: 0 success; 1 `bake check` found drift; 2 bad input or a refused operation (every
problem printed with its path); 70 an internal error (a bug: reported in one line, traceback only
with BAKE_DEBUG=1); 130 interrupted.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import BakeError

if TYPE_CHECKING:
    from rich.console import Console


def _print_problems(err: Console, exc: BakeError) -> None:
    from rich.text import Text

    for problem in exc.problems:
        err.print(Text.assemble(("error ", "bold red"), str(problem)), highlight=False, soft_wrap=True)


# sub-command -> (module of this package, its entry point). A module is imported when its command runs:
# a re-bake that keeps its tree is mostly start-up time, and no command needs another's libraries (the
# server's TLS, cloud-init's schema, rich's tables).
COMMANDS = {
    "check": ("check", "check_main"),
    "images": ("images", "images_main"),
    "plan": ("baking", "plan_main"),
    "secrets": ("secrets", "secrets_main"),
    "serve": ("serve", "serve_main"),
    "status": ("serve", "status_main"),
}
BAKE = ("baking", "bake_main")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    module, entry = COMMANDS[command] if command is not None else BAKE
    try:
        run: Callable[[list[str]], int] = getattr(importlib.import_module(f".{module}", __name__), entry)
        return run(argv[1:] if command is not None else argv)
    except BakeError as exc:
        _print_problems(_stderr(), exc)
        return exc.exit_code
    except KeyboardInterrupt:
        _stderr().print("interrupted; the previous outputs are untouched")
        return 130
    except Exception as exc:  # a bug: one line, not a traceback, unless asked
        from rich.text import Text

        if os.environ.get("BAKE_DEBUG"):
            import traceback

            traceback.print_exc()
        _stderr().print(
            Text.assemble(("internal error ", "bold red"), f"{type(exc).__name__}: {exc}"),
            "(BAKE_DEBUG=1 shows the traceback)",
            highlight=False,
        )
        return 70


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True)
