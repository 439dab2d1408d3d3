#!/usr/bin/env python3
"""Import cycles between the files of each crate of the workspace.

A file imports another when it names a path into it: `use crate::a::b`, `use super::c`,
`crate::a::f()` written inline, `self::d` in a `mod.rs`. Each path is resolved to the deepest
module file it reaches (a `mod.rs`, a `name.rs`, or the crate root). A cycle is a set of files
each reachable from every other; prints each one and exits 1 if there is any. Tests (`tests.rs`,
`tests/` folders, `#[cfg(test)]` modules inside a file) are not part of the design and are left out.

    scripts/import-cycles.py [CRATE_SRC_DIR...]   default: src events/src projections/src handshake/src
"""
import os
import re
import sys

PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP = re.compile(r"\buse\s+(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\}", re.S)
# `use child::…` in a module: a path relative to it (Rust 2018), into one of its child modules.
# `child::item` written inline (not after `crate::`, `super::`, `self::` or another path segment).
INLINE_CHILD = re.compile(r"(?<![A-Za-z0-9_:])([a-z_][a-z0-9_]*)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
RELATIVE_USE = re.compile(r"\buse\s+([a-z_][a-z0-9_]*)((?:::[A-Za-z_][A-Za-z0-9_]*)*)")


def module_files(root):
    """Maps each module path (a tuple of names) to its file, for the crate whose source is root."""
    modules = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, root)[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            if "tests" in parts or "bin" in parts:
                continue
            modules[tuple(parts)] = path
    return modules


def without_tests(text):
    """The text before a file's `#[cfg(test)]` module (tests come last in this codebase)."""
    marker = re.search(r"#\[cfg\(test\)\]\s*(pub(\([a-z]+\))?\s+)?mod\s+\w+\s*\{", text)
    return text[: marker.start()] if marker else text


def strip_comments(text):
    """The text without comments, and without `pub(in path)` visibilities, which name a module
    without importing anything from it."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"\bpub\(in [^)]*\)", "pub", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


REEXPORTS = {}
PUB_USE = re.compile(r"\bpub(?:\([a-z]+\))?\s+use\s+([^;]*);", re.S)


def reexports(modules, module, text):
    """(module, name) -> the module a `pub use` in `module` takes `name` from: a facade is followed
    to what it re-exports, and is not itself an import."""
    for statement in PUB_USE.findall(strip_comments(without_tests(text))):
        statement = " ".join(statement.split())
        head, _, group = statement.partition("::{")
        items = [item.strip() for item in group.rstrip("}").split(",")] if group else [""]
        for item in items:
            path = f"{head}::{item}" if item else head
            path = path.split(" as ")
            alias = path[1].strip() if len(path) > 1 else None
            names = [name for name in path[0].split("::") if name]
            if not names:
                continue
            anchor = names[0] if names[0] in ("crate", "super", "self") else "self"
            if names[0] in ("crate", "super", "self"):
                names = names[1:]
            target = resolve(modules, module, anchor, names, follow=False)
            if target is not None and names:
                REEXPORTS[(module, alias or names[-1])] = target


def resolve(modules, here, anchor, names, follow=True):
    """The file a path reaches: the longest prefix of it that is a module, followed through the
    re-exports of that module."""
    if anchor == "crate":
        base = ()
    elif anchor == "self":
        base = here
    else:
        base = here[:-1]
    full = base + tuple(names)
    for length in range(len(full), -1, -1):
        if full[:length] in modules:
            target = full[:length]
            seen = set()
            while follow and length < len(full) and (target, full[length]) in REEXPORTS:
                if (target, full[length]) in seen:
                    break
                seen.add((target, full[length]))
                target = REEXPORTS[(target, full[length])]
            return target
    return None


def edges(modules, module, text):
    found = set()
    text = PUB_USE.sub("", strip_comments(without_tests(text)))
    # A file that is not a mod.rs is the module itself: `super` is its parent.
    for anchor, rest, group in USE_GROUP.findall(text):
        prefix = [name for name in rest.split("::") if name]
        for item in re.split(r",", group):
            item = item.strip().split(" as ")[0].strip()
            names = prefix + [name for name in item.split("::") if name and name != "self" and name != "{"]
            target = resolve(modules, module, anchor, names)
            if target is not None:
                found.add(target)
    for first, rest in RELATIVE_USE.findall(text):
        if first in ("crate", "super", "self"):
            continue
        names = [first] + [name for name in rest.split("::") if name]
        if module + (first,) in modules:
            target = resolve(modules, module, "self", names)
            if target is not None:
                found.add(target)
    # `child::item` written inline in a module: a path into one of its child modules.
    for first, rest in INLINE_CHILD.findall(text):
        if module + (first,) in modules:
            names = [first] + [name for name in rest.split("::") if name]
            target = resolve(modules, module, "self", names)
            if target is not None:
                found.add(target)
    for anchor, rest in PATH.findall(text):
        names = [name for name in rest.split("::") if name]
        target = resolve(modules, module, anchor, names)
        if target is not None:
            found.add(target)
    found.discard(module)
    # A module's parent declares it (`mod x;`): naming the parent's items is not a cycle by itself
    # unless the parent names the child's; both directions count as written.
    return found


def cycles(graph):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in graph:
        if node not in index:
            visit(node)
    return out


def main():
    roots = sys.argv[1:] or ["src", "events/src", "projections/src", "handshake/src"]
    found = 0
    for root in roots:
        modules = module_files(root)
        REEXPORTS.clear()
        for module, path in modules.items():
            with open(path, encoding="utf-8") as file:
                reexports(modules, module, file.read())
        graph = {}
        for module, path in modules.items():
            with open(path, encoding="utf-8") as file:
                graph[module] = edges(modules, module, file.read())
        for component in cycles(graph):
            found += 1
            names = [modules[module] for module in component]
            print(f"import cycle in {root}: " + " <-> ".join(names))
            for module in component:
                into = sorted(modules[t] for t in graph[module] if t in component)
                print(f"  {modules[module]} imports {', '.join(into)}")
    if found:
        sys.exit(1)
    print("no import cycles between files")


if __name__ == "__main__":
    main()
