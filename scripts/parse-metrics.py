#!/usr/bin/env python3
"""Parses a Prometheus text exposition (format 0.0.4) read from stdin with the reference
parser, prometheus_client.parser.text_string_to_metric_families (PyPI prometheus-client),
and prints what it read as JSON:

    [{"name": ..., "type": ..., "help": ...,
      "samples": [{"name": ..., "labels": {...}, "value": ...}]}]

A value that is not finite is printed as its text ("+Inf", "NaN"). Text the parser refuses
ends the script with its error and a non-zero status. tests/it/metrics.rs runs it on what
/metrics serves; scripts/test installs prometheus-client when it is missing.
"""

import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def value(number):
    return number if math.isfinite(number) else str(number)


def main():
    families = []
    for family in text_string_to_metric_families(sys.stdin.read()):
        families.append(
            {
                "name": family.name,
                "type": family.type,
                "help": family.documentation,
                "samples": [
                    {"name": s.name, "labels": s.labels, "value": value(s.value)}
                    for s in family.samples
                ],
            }
        )
    json.dump(families, sys.stdout)


if __name__ == "__main__":
    main()
