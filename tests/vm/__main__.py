"""`python -m tests.vm image --arch amd64|arm64`; `python -m tests.vm run --profile-dir outputs/<cluster>`."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
