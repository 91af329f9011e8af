#!/usr/bin/env python3
"""Validates a SARIF log (stdin) against the vendored OASIS SARIF 2.1.0 schema
(tests/sarif/sarif-schema-2.1.0.json, JSON Schema draft 04) with jsonschema (PyPI).

Prints one line per problem: "at /path: message". Exit status 0 when the check ran (the
output says what failed), 2 when it could not run.
"""
import json
import os
import sys


def main():
    import jsonschema

    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "tests", "sarif", "sarif-schema-2.1.0.json")) as f:
        schema = json.load(f)
    log = json.load(sys.stdin)
    validator = jsonschema.Draft4Validator(schema)
    for error in validator.iter_errors(log):
        path = "/".join(str(p) for p in error.absolute_path)
        print(f"at /{path}: {error.message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
