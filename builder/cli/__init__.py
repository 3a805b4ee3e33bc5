"""`bake` command line: which sub-command runs, exit codes, errors printed.

Exit codes: 0 success; 1 `bake check` found drift; 2 bad input or a refused operation (every
problem printed with its path); 70 an internal error (a bug: reported in one line, traceback only
with BAKE_DEBUG=1); 130 interrupted.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

from rich.console import Console
from rich.text import Text

from ..errors import BakeError
from .baking import bake_main, plan_main
from .check import check_main
from .images import images_main
from .secrets import secrets_main
from .serve import serve_main, status_main


def _print_problems(err: Console, exc: BakeError) -> None:
    for problem in exc.problems:
        err.print(Text.assemble(("error ", "bold red"), str(problem)), highlight=False, soft_wrap=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    err = Console(stderr=True)
    try:
        if argv and argv[0] == "check":
            return check_main(argv[1:])
        if argv and argv[0] == "images":
            return images_main(argv[1:])
        if argv and argv[0] == "plan":
            return plan_main(argv[1:])
        if argv and argv[0] == "secrets":
            return secrets_main(argv[1:])
        if argv and argv[0] == "serve":
            return serve_main(argv[1:])
        if argv and argv[0] == "status":
            return status_main(argv[1:])
        return bake_main(argv)
    except BakeError as exc:
        _print_problems(err, exc)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted; the previous outputs are untouched")
        return 130
    except Exception as exc:  # a bug: one line, not a traceback, unless asked
        if os.environ.get("BAKE_DEBUG"):
            traceback.print_exc()
        err.print(
            Text.assemble(("internal error ", "bold red"), f"{type(exc).__name__}: {exc}"),
            "(BAKE_DEBUG=1 shows the traceback)",
            highlight=False,
        )
        return 70
