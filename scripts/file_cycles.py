"""File-level import circles in a Rust crate's src/ (codeshape.py checks only top-level modules).

usage: python3 scripts/file_cycles.py [src]
Every path a file names (`use` trees with braces, and paths in code) that starts with `crate::`,
`super::`, `self::` or a child module's name is resolved to the file of the longest module prefix it names; a file
naming its own child modules' items (re-exports in mod.rs included) depends on them. Test
modules (`#[cfg(test)]` to the end of the file) are left out: they may use anything. Prints
every strongly connected group of files; exit 1 when there is one.
"""
import os
import re
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "src"


def module_of(rel):
    parts = rel[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


files = {}
for d, _, fs in os.walk(src):
    for f in fs:
        if f.endswith(".rs"):
            rel = os.path.relpath(os.path.join(d, f), src)
            files[module_of(rel)] = rel
# Inline `mod name { ... }` blocks (not test modules) are modules of their own file.
inline = {}


def strip(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(\\.|[^"\\])*"', '""', text)
    cut = re.search(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", text)
    return text[: cut.start()] if cut else text


def expand(prefix, tree):
    """Expands a use tree body `a::{b, c::{d}}` into full paths."""
    tree = tree.strip()
    out = []
    m = re.match(r"^([\w:]*?)(::)?\{(.*)\}$", tree, re.S)
    if m:
        head = m.group(1)
        base = prefix + ([p for p in head.split("::") if p] if head else [])
        depth, cur, parts = 0, "", []
        for ch in m.group(3):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
        for p in parts:
            if p.strip():
                out += expand(base, p)
        return out
    tree = re.sub(r"\s+as\s+\w+$", "", tree)
    return [prefix + [p for p in tree.split("::") if p]]


def resolve(mod, path):
    """Absolute module path of a relative or crate path, or None."""
    if not path:
        return None
    if path[0] == "crate":
        cur, rest = [], path[1:]
    elif path[0] in ("super", "self"):
        cur, rest = list(mod), path
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                cur = cur[:-1]
            rest = rest[1:]
    else:
        return None
    full = tuple(cur) + tuple(rest)
    for n in range(len(full), -1, -1):
        if full[:n] in files:
            return full[:n]
    return None


edges = {m: set() for m in files}
for mod, rel in files.items():
    text = strip(open(os.path.join(src, rel), encoding="utf-8").read())
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        paths += expand([], m.group(1))
    for m in re.finditer(r"\b((?:crate|super|self)(?:::\w+)+)", text):
        paths.append(m.group(1).split("::"))
    # Paths that start at a child module (`use child::Item;`, `child::f()`) name that child.
    for m in re.finditer(r"(?<![\w:])(\w+)::(\w+)", text):
        if mod + (m.group(1),) in files:
            paths.append(["self", m.group(1), m.group(2)])
    paths = [["self"] + p if p and mod + (p[0],) in files else p for p in paths]
    for p in paths:
        target = resolve(mod, p)
        if target is not None and target != mod:
            edges[mod].add(target)

# Tarjan's strongly connected components.
index, low, on, stack, sccs, counter = {}, {}, set(), [], [], [0]
sys.setrecursionlimit(10000)


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in sorted(edges[v]):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(sorted(files[c] for c in comp))


for v in sorted(files):
    if v not in index:
        visit(v)
print(f"files {len(files)}; import circles {len(sccs)}")
for c in sccs:
    print("  " + " <-> ".join(c))
sys.exit(1 if sccs else 0)
