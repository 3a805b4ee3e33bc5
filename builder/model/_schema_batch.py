"""cloud-init's own `cloud-init schema --config-file FILE`, over many files in one interpreter.

Run by cloud-init's Python (see builder/model/cloudinit_schema.py), never imported by bake: it needs only the
standard library and cloud-init. For each file it calls the function the command calls, with the
command's error handling, and prints one JSON list of [failed, output] in argument order, where output
is what the command prints (stdout, then stderr). The one difference is speed: the YAML is read with
libyaml when the interpreter has it (same documents, ~40x faster on the large block scalars of a
user-data), and the interpreter, the schema and its validator are made once instead of once per file.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from typing import Any

NO_CLOUD_INIT = 3  # exit status: cloud-init cannot be imported here, the caller runs the command instead


def main(paths: list[str]) -> int:
    try:
        import yaml
        from cloudinit import safeyaml
        from cloudinit.config import schema
    except ImportError as exc:
        print(f"cannot import cloud-init: {exc}", file=sys.stderr)
        return NO_CLOUD_INIT
    fast: Any = getattr(yaml, "CSafeLoader", None)
    if fast is not None:

        class Loader(fast):  # type: ignore[misc]
            """cloud-init's _CustomSafeLoader on libyaml: SafeLoader plus python/unicode as str."""

        Loader.add_constructor(
            "tag:yaml.org,2002:python/unicode", lambda loader, node: loader.construct_scalar(node)
        )
        safeyaml.load = lambda blob: yaml.load(blob, Loader=Loader)
    full = schema.get_schema()
    try:
        cls, checker = schema.get_jsonschema_validator()
    except ImportError:
        pass  # cloud-init then skips validation; so does the command
    else:
        # one validator for every file: it caches the schema's resolved $refs (about half the time)
        validator = cls(full, format_checker=checker())

        def same_validator(schema_: Any, format_checker: Any = None) -> Any:
            return validator if schema_ is full else cls(schema_, format_checker=format_checker)

        schema.get_jsonschema_validator = lambda: (same_validator, checker)
    results = []
    for path in paths:
        out, err = io.StringIO(), io.StringIO()
        failed = False
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            # cloudinit.config.schema.handle_schema_args for --config-file, without --annotate
            # (cloud-init's error() prints and exits with status 1)
            try:
                schema.validate_cloudconfig_file(path, full, False)
            except (schema.SchemaValidationError, RuntimeError) as exc:
                try:
                    schema.error(str(exc))
                except SystemExit as status:
                    failed = status.code != 0
                else:
                    failed = False
            else:
                print("Valid cloud-config:", path)
        results.append([failed, out.getvalue() + err.getvalue()])
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
