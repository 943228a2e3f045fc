#!/usr/bin/env python3
"""Checks a Hydra JUnit file the way a real CI consumer reads it (junitparser).

Usage: check-junit.py FILE [--expect-areas dns,ports,health,persistence]

Prints per-suite (runtime) counts: tests, passed, failed, errors, skipped, and not enforceable
(skipped with type="not-enforceable", counted apart from ordinary skips). Exits:
  0  the file parses and every expected area has at least one testcase in every suite
  1  an expected area is missing for some runtime, or the file has no testsuite
  2  usage error, junitparser missing, or the file does not parse

junitparser: /opt/hydra/junit-venv/bin/pip install junitparser
(run this script with /opt/hydra/junit-venv/bin/python).
"""

import argparse
import sys

try:
    from junitparser import Error, Failure, JUnitXml, Skipped, TestSuite
except ImportError:
    print("error: junitparser is not installed (python3 -m venv /opt/hydra/junit-venv && "
          "/opt/hydra/junit-venv/bin/pip install junitparser)", file=sys.stderr)
    sys.exit(2)


def area_of(case):
    """`<area>::<name>` is the testcase name; fall back to the classname `<runtime>::<area>`."""
    if case.name and "::" in case.name:
        return case.name.split("::", 1)[0]
    if case.classname and "::" in case.classname:
        return case.classname.split("::", 1)[1]
    return None


def main():
    ap = argparse.ArgumentParser(description="Check a Hydra JUnit XML file with junitparser.")
    ap.add_argument("file")
    ap.add_argument("--expect-areas", default="",
                    help="comma-separated areas every runtime suite must contain")
    args = ap.parse_args()
    expected = [a.strip() for a in args.expect_areas.split(",") if a.strip()]

    try:
        xml = JUnitXml.fromfile(args.file)
    except Exception as e:  # junitparser raises lxml/ElementTree errors, OSError, ...
        print(f"error: {args.file} does not parse as JUnit XML: {e}", file=sys.stderr)
        return 2
    suites = [xml] if isinstance(xml, TestSuite) else list(xml)
    if not suites:
        print(f"error: {args.file} has no testsuite", file=sys.stderr)
        return 1

    problems = []
    print(f"{'suite':<20} {'tests':>5} {'passed':>6} {'failed':>6} {'errors':>6} "
          f"{'skipped':>7} {'not-enf':>7}")
    for suite in suites:
        counts = dict(tests=0, passed=0, failed=0, errors=0, skipped=0, not_enforceable=0)
        areas = set()
        for case in suite:
            counts["tests"] += 1
            area = area_of(case)
            if area:
                areas.add(area)
            results = case.result
            if not results:
                counts["passed"] += 1
            elif any(isinstance(r, Failure) for r in results):
                counts["failed"] += 1
            elif any(isinstance(r, Error) for r in results):
                counts["errors"] += 1
            elif any(isinstance(r, Skipped) and r.type == "not-enforceable" for r in results):
                counts["not_enforceable"] += 1
            else:
                counts["skipped"] += 1
        print(f"{suite.name or '?':<20} {counts['tests']:>5} {counts['passed']:>6} "
              f"{counts['failed']:>6} {counts['errors']:>6} {counts['skipped']:>7} "
              f"{counts['not_enforceable']:>7}")
        missing = [a for a in expected if a not in areas]
        if missing:
            problems.append(f"suite {suite.name!r} has no testcase for area(s): {', '.join(missing)}")

    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
