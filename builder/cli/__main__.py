"""`python -m builder.cli`: the `bake` command."""

from . import main

if __name__ == "__main__":
    raise SystemExit(main())
