"""`bake` command line: which sub-command runs, exit codes, errors printed.

Exit codes: 0 success; 1 `bake check` found drift; 2 bad input or a refused operation (every
problem printed with its path); 70 an internal error (a bug: reported in one line, traceback only
with BAKE_DEBUG=1); 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import BakeError

if TYPE_CHECKING:
    from rich.console import Console


def _print_problems(err: Console, exc: BakeError) -> None:
    from rich.text import Text

    for problem in exc.problems:
        err.print(Text.assemble(("error ", "bold red"), str(problem)), highlight=False, soft_wrap=True)


def _run(command: str, argv: list[str]) -> int:
    """The sub-command's module is imported when it runs: a re-bake that keeps its tree is mostly start-up
    time, and no command needs another's libraries (the server's TLS, cloud-init's schema, rich's tables)."""
    if command == "check":
        from .check import check_main

        return check_main(argv)
    if command == "images":
        from .images import images_main

        return images_main(argv)
    if command == "plan":
        from .baking import plan_main

        return plan_main(argv)
    if command == "secrets":
        from .secrets import secrets_main

        return secrets_main(argv)
    if command == "serve":
        from .serve import serve_main

        return serve_main(argv)
    if command == "status":
        from .serve import status_main

        return status_main(argv)
    from .baking import bake_main

    return bake_main(argv)


COMMANDS = ("check", "images", "plan", "secrets", "serve", "status")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in COMMANDS:
            return _run(argv[0], argv[1:])
        return _run("bake", argv)
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
