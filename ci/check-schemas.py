#!/usr/bin/env python3
"""Validate every TOML file of an ODI network repository against its JSON Schema.

An independent check of the schemas in `schemas/` (generated from the Rust types by
`odi schemas schemas`): the files are parsed with Python's `tomllib` and validated with the
`jsonschema` package (Draft 2020-12), so a schema that does not say what the agents accept
shows up here.

Usage: check-schemas.py REPO [--schemas DIR] [--verbose]

Prints one line per failing file (`path: problem`) and exits 1 when any file fails, 2 when
the tool itself cannot run (missing package, missing schema). With --verbose it also prints
`ok <path> <schema>` for every file that passes.

Needs Python 3.11+ and jsonschema (Debian/Ubuntu: `apt-get install python3-jsonschema`).
"""

import argparse
import json
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python < 3.11
    print("check-schemas: Python 3.11 or newer is needed (tomllib)", file=sys.stderr)
    sys.exit(2)

try:
    import jsonschema
except ImportError:
    print("check-schemas: the jsonschema package is missing; install python3-jsonschema "
          "(apt-get install python3-jsonschema) or `pip install jsonschema`", file=sys.stderr)
    sys.exit(2)

NETWORK_DIRS = ("trust", "catalogs", "directories", "relays")


def schema_for(path: str):
    """The schema file name for a repository-relative path (mirrors odi_network::schema::for_path)."""
    if not path.endswith(".toml"):
        return None
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == "trust" and parts[1] == "roots":
        return "root.schema.json"
    if path == "trust/snapshot.toml":
        return "snapshot.schema.json"
    if len(parts) == 3 and parts[0] == "catalogs" and parts[2] == "catalog.toml":
        return "catalog.schema.json"
    if len(parts) >= 3 and parts[0] == "catalogs":
        return "release.schema.json"
    if len(parts) == 2 and parts[0] == "directories":
        return "directory.schema.json"
    if len(parts) == 2 and parts[0] == "relays":
        return "relay.schema.json"
    return None


def where(error) -> str:
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return loc.lstrip(".") or "(top level)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("repo", type=Path)
    ap.add_argument("--schemas", type=Path, help="schema folder (default: REPO/schemas)")
    ap.add_argument("--verbose", "-v", action="store_true")
    args = ap.parse_args()

    schema_dir = args.schemas or args.repo / "schemas"
    validators = {}

    def validator(name: str):
        if name not in validators:
            f = schema_dir / name
            try:
                schema = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                print(f"check-schemas: cannot read schema {f}: {e}", file=sys.stderr)
                sys.exit(2)
            jsonschema.Draft202012Validator.check_schema(schema)
            validators[name] = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        return validators[name]

    files = []
    for top in NETWORK_DIRS:
        base = args.repo / top
        if base.is_dir():
            files.extend(p for p in base.rglob("*.toml") if p.is_file())
    files.sort()
    if not files:
        print(f"check-schemas: no network files under {args.repo}", file=sys.stderr)
        return 2

    failed = 0
    for f in files:
        rel = f.relative_to(args.repo).as_posix()
        name = schema_for(rel)
        if name is None:
            print(f"{rel}: not a known network file kind (no schema applies)")
            failed += 1
            continue
        try:
            doc = tomllib.loads(f.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            print(f"{rel}: not valid TOML: {e}")
            failed += 1
            continue
        errors = sorted(validator(name).iter_errors(doc), key=lambda e: list(e.absolute_path))
        if errors:
            failed += 1
            detail = "; ".join(f"{where(e)}: {e.message}" for e in errors[:5])
            more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
            print(f"{rel}: does not match {name}: {detail}{more}")
        elif args.verbose:
            print(f"ok {rel} {name}")
    if failed:
        print(f"check-schemas: {failed} of {len(files)} files failed", file=sys.stderr)
        return 1
    print(f"check-schemas: {len(files)} files match their schemas", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
