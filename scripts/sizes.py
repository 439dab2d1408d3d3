#!/usr/bin/env python3
"""Sizes the shell issue sets: no file over 600 lines and no function over 100 lines, outside
tests (`tests.rs`, `tests/` folders and `#[cfg(test)]` modules are left out).

The functions that are state tables (one arm per state or per event kind, read as a table, not
as a procedure) may be longer; they are named below with why. Files and functions still over the
limits and not yet split are named too, with their size now: the check fails if one grows, so
the list can only shrink.

    scripts/sizes.py [CRATE_SRC_DIR...]   default: src events/src projections/src handshake/src
"""
import os
import re
import sys

FILE_LIMIT = 600
FUNCTION_LIMIT = 100

# Tables: a match with one arm per state or kind.
TABLES = {
    ("handshake/src/machine.rs", "step"): "the handshake's state table: one arm per (phase, input)",
    ("events/src/narrate.rs", "describe"): "one sentence per event kind",
    ("projections/src/sessions.rs", "apply"): "the session fold: one arm per event kind",
    ("events/src/testing/story.rs", "story"): "test-support: the fixed story, one event per line",
}

# Not split yet: the size each had when this check was written. Growing past it fails.
NOT_YET: dict = {}

FN = re.compile(
    r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+([A-Za-z_][A-Za-z0-9_]*)"
)


def code_of(line):
    """The line without string and char literals and line comments (enough to count braces)."""
    line = re.sub(r'"(?:\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(?:\\.|[^'\\])'", "''", line)
    cut = line.find("//")
    return line if cut < 0 else line[:cut]


def extent(code, first):
    """The index of the line that closes the braced item opening at or after `first`, or None for
    an item without a body."""
    depth, opened = 0, False
    for index in range(first, len(code)):
        line = code[index]
        if not opened and ";" in line and "{" not in line:
            return None
        depth += line.count("{") - line.count("}")
        opened = opened or "{" in line
        if opened and depth <= 0:
            return index
    return None


def measure(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    code = [code_of(line) for line in lines]
    tests = set()
    index = 0
    while index < len(code):
        if re.match(r"\s*#\[cfg\(test\)\]", code[index]) and index + 1 < len(code) and re.match(
            r"\s*(pub\s+)?mod\s+\w+\s*\{", code[index + 1]
        ):
            end = extent(code, index + 1) or index + 1
            tests.update(range(index, end + 1))
            index = end + 1
            continue
        index += 1
    functions = []
    for index, line in enumerate(code):
        found = FN.match(line)
        if index in tests or not found:
            continue
        end = extent(code, index)
        if end is not None:
            functions.append((found.group(1), index + 1, end - index + 1))
    return len(lines) - len(tests), functions


def main():
    roots = sys.argv[1:] or ["src", "events/src", "projections/src", "handshake/src"]
    failures = []
    for root in roots:
        for folder, _, files in os.walk(root):
            if "tests" in folder.split(os.sep) or "bin" in folder.split(os.sep):
                continue
            for name in sorted(files):
                if not name.endswith(".rs") or name == "tests.rs":
                    continue
                path = os.path.join(folder, name)
                size, functions = measure(path)
                if size > NOT_YET.get(path, FILE_LIMIT):
                    failures.append(f"{path}: {size} lines (limit {NOT_YET.get(path, FILE_LIMIT)})")
                for function, line, length in functions:
                    if (path, function) in TABLES:
                        continue
                    limit = NOT_YET.get((path, function), FUNCTION_LIMIT)
                    if length > limit:
                        failures.append(f"{path}:{line}: fn {function} is {length} lines (limit {limit})")
    for failure in failures:
        print(failure)
    if failures:
        sys.exit(1)
    print(f"no file over {FILE_LIMIT} lines and no function over {FUNCTION_LIMIT} lines outside tests "
          f"(tables and {len(NOT_YET)} named exception{'' if len(NOT_YET) == 1 else 's'} aside)")


if __name__ == "__main__":
    main()
