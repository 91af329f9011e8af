#!/usr/bin/env python3
"""Checks for the OpenAPI tests (tests/it/openapi.rs), reading JSON on stdin.

  openapi-check.py spec    stdin: an OpenAPI document; validated as OpenAPI 3.1 by
                           openapi-spec-validator (PyPI). Prints the first problem.
  openapi-check.py values  stdin: [[label, schema, instance], ...]; each instance validated
                           against its JSON Schema 2020-12 schema by jsonschema (PyPI).
                           Prints one line per failure: "label: message".

Exit status 0 when the check ran (the output says what failed), 2 when it could not run.
"""
import json
import sys


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ("spec", "values"):
        print(__doc__, file=sys.stderr)
        return 2
    data = json.load(sys.stdin)
    if sys.argv[1] == "spec":
        from openapi_spec_validator import validate
        from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

        try:
            validate(data)
        except OpenAPIValidationError as error:
            print(f"invalid OpenAPI: {error}")
        return 0
    import jsonschema

    for label, schema, instance in data:
        validator = jsonschema.Draft202012Validator(schema)
        for error in validator.iter_errors(instance):
            path = "/".join(str(p) for p in error.absolute_path)
            print(f"{label}: at /{path}: {error.message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
