#!/usr/bin/env python3
"""Fail on an import cycle between the modules of any crate in the Cargo workspace.

Usage:
    scripts/check-import-cycles.py [WORKSPACE_DIR]   # default: the repository root (this script's ..)
    scripts/check-import-cycles.py --self-test       # check the checker on tiny temporary crates
    scripts/check-import-cycles.py --edges [DIR]     # also print every edge (for debugging)

Exit status: 0 no cycle, 1 at least one cycle (each printed as `a -> b -> ... -> a` with file paths and the
line of every reference on it), 2 the workspace could not be read.

The graph (Python 3.11 standard library only; a text scan, not a compiler):

* Crates: every workspace member (root `Cargo.toml` `[workspace] members`, globs allowed) and its targets,
  each target its own crate root: the lib (`[lib] path` or `src/lib.rs`), bins (`[[bin]]`, `src/main.rs`,
  `src/bin/*.rs`, `src/bin/*/main.rs`), and integration tests, examples and benches (`tests/*.rs`,
  `tests/*/main.rs`, the same under `examples/` and `benches/`, plus `[[test]]`/`[[example]]`/`[[bench]]`).
  An integration test is a separate crate, so a file under `tests/` is only ever a module of its own test.
* Nodes: one per `.rs` file reached from a root through `mod x;` (`x.rs`, `x/mod.rs`, `#[path]`). An inline
  `mod x { ... }` is folded into its file: its references count as the file's, but `self`/`super` inside it
  resolve from the inline module.
* Before scanning, comments, string/char literals, `pub(in path)` visibilities and every item marked
  `#[cfg(test)]` (so `#[cfg(test)] mod tests { ... }` and `#[cfg(test)] mod tests;`) are removed.
* Edges: module M (the file) depends on module T when M's code names a path into T: a `use` tree (`pub use`
  re-exports included: the re-exporting module depends on what it re-exports), or a path anywhere in code
  that starts with `crate::`, `$crate::`, `self::`, `super::`, or with the name of a module M itself declares
  (`child::f()`). T is the deepest module the path walks through; when the next segment names something T
  only imports (`use`/`pub use` in T), the path is followed to where that import leads, so `crate::Thing`
  re-exported by `lib.rs` from `a.rs` is an edge to `a`, not to the crate root (the root keeps its own edge
  to `a` for the re-export). A reference from a file to itself is no edge.
* A `mod x;` declaration is NOT an edge (nor is the nesting of a module in its parent); only references are.
  So a parent that calls into its child is fine, a child that names its parent (`use super::Thing`,
  `crate::a::X` from inside `a/b.rs`) is an edge child -> parent, and both together are a cycle.

Strongly connected components (Tarjan) with more than one node are reported, each with one shortest example
cycle through its first node.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
import tempfile
import tomllib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"

# ----------------------------------------------------------------------------------------------- lexing


def mask_source(src: str) -> str:
    """Blank comments and string/char literals (newlines kept, so offsets and line numbers stay)."""
    out = list(src)
    n = len(src)
    i = 0

    def blank(a: int, b: int) -> None:
        for k in range(a, min(b, n)):
            if out[k] != "\n":
                out[k] = " "

    def ident_char(c: str) -> bool:
        return c.isalnum() or c == "_"

    while i < n:
        c = src[i]
        if c == "/" and i + 1 < n and src[i + 1] == "/":
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif c == "/" and i + 1 < n and src[i + 1] == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c in "rbc" and (i == 0 or not ident_char(src[i - 1])):
            # raw strings r"..", r#".."#, br#".."#, cr".."; byte/C strings b"..", c"..", byte chars b'x'
            m = re.compile(r"(?:br|cr|r)(#*)\"").match(src, i)
            if m:
                close = '"' + m.group(1)
                j = src.find(close, m.end())
                j = n if j < 0 else j + len(close)
                blank(i + 1, j - 1)
                i = j
                continue
            if c in "bc" and i + 1 < n and src[i + 1] in "\"'":
                i += 1  # the literal itself is handled on the next round
                continue
            i += 1
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            blank(i + 1, j)
            i = j + 1
        elif c == "'":
            # a char literal ('x', '\n', '\u{..}', '\'') or a lifetime/label ('a, 'static)
            if i + 1 < n and src[i + 1] == "\\":
                j = i + 2
                while j < n and src[j] != "'":
                    j += 2 if src[j] == "\\" else 1
                blank(i + 1, j)
                i = j + 1
            elif i + 2 < n and src[i + 2] == "'":
                blank(i + 1, i + 2)
                i += 3
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def matching_brace(text: str, open_at: int) -> int:
    """Index just past the `}` matching the `{` at `open_at` (text already masked)."""
    depth = 0
    for k in range(open_at, len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                return k + 1
    return len(text)


# `#[cfg(test)]` and `#[cfg(all(test, ...))]` (test-only); not `any(test, ...)`
CFG_TEST = re.compile(r"#\s*\[\s*cfg\s*\(\s*(?:test|all\s*\(\s*test\b[^()]*\))\s*\)\s*\]")
INNER_CFG_TEST = re.compile(r"#\s*!\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]")
PUB_IN = re.compile(r"\bpub\s*\(\s*in\s+[^)]*\)")


def blank_span(text: str, a: int, b: int) -> str:
    return text[:a] + re.sub(r"[^\n]", " ", text[a:b]) + text[b:]


def strip_test_items(text: str) -> str:
    """Blank every item marked `#[cfg(test)]` (through its `;` or its matching `}`)."""
    if INNER_CFG_TEST.search(text):
        return re.sub(r"[^\n]", " ", text)
    while True:
        m = CFG_TEST.search(text)
        if not m:
            return text
        depth, k, end = 0, m.end(), len(text)
        while k < len(text):
            ch = text[k]
            if ch in "([":
                depth += 1
            elif ch in ")]":
                depth -= 1
            elif depth == 0 and ch == ";":
                end = k + 1
                break
            elif depth == 0 and ch == "{":
                end = matching_brace(text, k)
                break
            k += 1
        text = blank_span(text, m.start(), end)


# ------------------------------------------------------------------------------------------ module tree


@dataclass
class Module:
    path: tuple[str, ...]  # module path below the crate root
    file: Path  # the file it lives in (inline modules share their file)
    parent: "Module | None"
    children: dict[str, "Module"] = field(default_factory=dict)
    imports: dict[str, list] = field(default_factory=dict)  # name -> [(anchor Module, segments)]

    @property
    def name(self) -> str:
        return "::".join(self.path) or "crate"


@dataclass
class Ref:
    module: Module  # the (possibly inline) module whose code holds the reference; resolves self/super
    anchor: Module  # where the path starts
    segs: list[str]
    line: int
    text: str


@dataclass
class Crate:
    label: str  # e.g. "riptide-runtime (lib)"
    root: Module
    file_modules: dict[Path, Module] = field(default_factory=dict)  # file -> its (outermost) module
    refs: list[Ref] = field(default_factory=list)


MOD_DECL = re.compile(
    r"(?P<attrs>(?:#\s*\[[^\]]*\]\s*)*)(?:\bpub\s*(?:\([^)]*\))?\s*)?\bmod\s+(?P<name>" + IDENT + r")\s*(?P<kind>[;{])"
)
PATH_ATTR = re.compile(r"#\s*\[\s*path\s*=\s*\"")
USE_DECL = re.compile(r"(?<![\w$])use\s+")
PATH_START = re.compile(r"(?<![\w$:.])(\$crate|crate|self|super|" + IDENT + r")\s*::\s*")


class Scanner:
    def __init__(self, workspace: Path):
        self.workspace = workspace

    def rel(self, p: Path) -> str:
        try:
            return str(p.relative_to(self.workspace))
        except ValueError:
            return str(p)

    def build_crate(self, label: str, root_file: Path) -> Crate:
        root = Module((), root_file, None)
        crate = Crate(label, root)
        self.load_file(crate, root, root_file, is_mod_rs=True)
        return crate

    def load_file(self, crate: Crate, module: Module, file: Path, is_mod_rs: bool) -> None:
        if file in crate.file_modules:
            return  # the same file mounted twice (#[path]); scan it once
        crate.file_modules[file] = module
        raw = file.read_text(encoding="utf-8", errors="replace")
        text = strip_test_items(mask_source(raw))
        text = PUB_IN.sub(lambda m: " " * len(m.group(0)), text)
        # directory for `mod x;` below this file
        base = file.parent if is_mod_rs else file.parent / file.stem
        self.scan_block(crate, module, raw, text, 0, len(text), base, file.parent, inline=False)

    def scan_block(self, crate, module, raw, text, start, end, base: Path, file_dir: Path, inline: bool):
        """Scan text[start:end] (the body of `module`): mod declarations, inline modules, references."""
        pos = start
        body_spans = []  # spans of this block not inside a nested inline module
        for m in MOD_DECL.finditer(text, start, end):
            if m.start() < pos:
                continue
            name = m.group("name")
            attrs = m.group("attrs") or ""
            path_override = None
            pa = PATH_ATTR.search(attrs)
            if pa:
                q = m.start() + pa.end()  # raw text still holds the string at the same offset
                path_override = raw[q : raw.find('"', q)]
            child = module.children.get(name) or Module(module.path + (name,), module.file, module)
            module.children[name] = child
            if m.group("kind") == "{":
                brace = m.end() - 1
                close = matching_brace(text, brace)
                body_spans.append((pos, m.start()))
                # an inline module lives in its parent's file: fold it in, but keep its own path for self/super
                child.file = module.file
                self.scan_block(crate, child, raw, text, brace + 1, close - 1, base / name, file_dir, inline=True)
                pos = close
            else:
                body_spans.append((pos, m.start()))
                pos = m.end()
                if path_override is not None:
                    target = (base if inline else file_dir) / path_override
                    candidates = [(target, target.name == "mod.rs")]
                else:
                    candidates = [(base / f"{name}.rs", False), (base / name / "mod.rs", True)]
                for cand, mod_rs in candidates:
                    if cand.is_file():
                        child.file = cand.resolve()
                        self.load_file(crate, child, child.file, is_mod_rs=mod_rs)
                        break
                else:
                    print(f"warning: {self.rel(module.file)}: module `{name}` has no file", file=sys.stderr)
        body_spans.append((pos, end))
        for a, b in body_spans:
            self.scan_refs(crate, module, text, a, b)

    def line_of(self, text: str, offset: int) -> int:
        return text.count("\n", 0, offset) + 1

    def anchor_for(self, module: Module, first: str) -> Module | None:
        if first in ("crate", "$crate"):
            r = module
            while r.parent:
                r = r.parent
            return r
        if first == "self":
            return module
        if first == "super":
            return module.parent
        if first in module.children:
            return module
        return None  # an external crate, a type, a variable...

    def scan_refs(self, crate: Crate, module: Module, text: str, a: int, b: int) -> None:
        use_spans = []
        for m in USE_DECL.finditer(text, a, b):
            if any(s <= m.start() < e for s, e in use_spans):
                continue
            semi = text.find(";", m.end(), b)
            semi = b if semi < 0 else semi
            use_spans.append((m.start(), semi))
            tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+", "@", text[m.end() : semi]))
            line = self.line_of(text, m.start())
            for segs, alias in expand_use_tree(tree):
                if not segs or segs[0] == "":
                    continue  # `use ::ext::...`
                anchor = self.anchor_for(module, segs[0])
                if anchor is None:
                    continue
                rest = segs[1:] if segs[0] in ("crate", "$crate", "self", "super") else segs
                if alias and alias != "*" and alias != "_":
                    module.imports.setdefault(alias, []).append((anchor, rest))
                crate.refs.append(Ref(module, anchor, rest, line, "use " + "::".join(segs)))
        for m in PATH_START.finditer(text, a, b):
            if any(s <= m.start() < e for s, e in use_spans):
                continue
            first = m.group(1)
            anchor = self.anchor_for(module, first)
            if anchor is None:
                continue
            segs = [] if first in ("crate", "$crate", "self", "super") else [first]
            k = m.end()
            while True:
                mm = re.compile(r"(" + IDENT + r")(\s*::\s*)?").match(text, k)
                if not mm:
                    break
                segs.append(mm.group(1))
                if not mm.group(2):
                    break
                k = mm.end()
            shown = "::".join(segs) if segs and segs[0] == first else first + "::" + "::".join(segs)
            crate.refs.append(Ref(module, anchor, segs, self.line_of(text, m.start()), shown))


def split_top(s: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    return parts


def expand_use_tree(tree: str, prefix: tuple[str, ...] = ()) -> list[tuple[list[str], str | None]]:
    """`a::{b,c::d@e,self,*}` -> [(segments, name it binds)] (whitespace removed, `as` written `@`)."""
    out = []
    brace = tree.find("{")
    if brace >= 0 and tree.endswith("}"):
        head = tree[:brace].rstrip(":")
        base = prefix + tuple(s for s in head.split("::") if s != "") if head else prefix
        if tree.startswith("::"):
            base = ("",) + base
        for part in split_top(tree[brace + 1 : -1]):
            out += expand_use_tree(part, base)
        return out
    body, _, alias = tree.partition("@")  # `x as y` arrives as `x@y`
    alias = alias or None
    segs = list(prefix) + body.split("::")
    if segs and segs[-1] == "self":
        segs = segs[:-1]
    if not segs:
        return out
    if alias is None:
        alias = segs[-1]
    if segs[-1] == "*":
        segs = segs[:-1]
        alias = "*"
    return [(segs, alias)]


# ------------------------------------------------------------------------------------------ resolution


def resolve(anchor: Module, segs: list[str], depth: int = 0) -> Module:
    cur = anchor
    for i, s in enumerate(segs):
        if s == "super" and cur.parent is not None:
            cur = cur.parent
        elif s == "self":
            continue
        elif s in cur.children:
            cur = cur.children[s]
        elif s in cur.imports and depth < 16:
            # a name `cur` only imports: follow the import (first binding; `use` names are unique per module)
            a2, segs2 = cur.imports[s][0]
            return resolve(a2, list(segs2) + segs[i + 1 :], depth + 1)
        else:
            break
    return cur


def file_node(crate: Crate, module: Module) -> Path:
    return module.file


@dataclass
class Graph:
    crate: Crate
    edges: dict[Path, dict[Path, Ref]]  # from file -> to file -> first reference


def build_graph(crate: Crate) -> Graph:
    edges: dict[Path, dict[Path, Ref]] = {f: {} for f in crate.file_modules}
    for r in crate.refs:
        target = resolve(r.anchor, r.segs)
        src, dst = r.module.file, target.file
        if src != dst and dst not in edges[src]:
            edges[src][dst] = r
    return Graph(crate, edges)


def tarjan(nodes: list, edges: dict) -> list[list]:
    index, low, on, stack, comps, counter = {}, {}, set(), [], [], [0]
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root], key=str)))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w], key=str))))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                comps.append(comp)
    return comps


def example_cycle(start, members: set, edges: dict) -> list:
    """Shortest cycle start -> ... -> start inside one SCC (BFS)."""
    prev = {start: None}
    q = deque([start])
    while q:
        v = q.popleft()
        for w in sorted(edges[v], key=str):
            if w not in members:
                continue
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if w not in prev:
                prev[w] = v
                q.append(w)
    return [start, start]


# ------------------------------------------------------------------------------------------ workspace


def crate_roots(workspace: Path) -> list[tuple[str, Path]]:
    manifest = tomllib.loads((workspace / "Cargo.toml").read_text())
    members = []
    for pattern in manifest.get("workspace", {}).get("members", []):
        members += sorted(Path(p) for p in glob.glob(str(workspace / pattern)) if (Path(p) / "Cargo.toml").is_file())
    if "package" in manifest:
        members.insert(0, workspace)
    roots = []
    for member in members:
        m = tomllib.loads((member / "Cargo.toml").read_text())
        name = m.get("package", {}).get("name", member.name)
        seen: set[Path] = set()

        def add(kind: str, path: Path) -> None:
            path = path.resolve()
            if path.is_file() and path not in seen:
                seen.add(path)
                roots.append((f"{name} ({kind})", path))

        lib = m.get("lib", {})
        add("lib", member / lib.get("path", "src/lib.rs"))
        for t in m.get("bin", []):
            add(f"bin {t.get('name', '')}".strip(), member / t.get("path", f"src/bin/{t.get('name')}.rs"))
        add(f"bin {name}", member / "src/main.rs")
        for kind, key, folder in (("bin", "bin", "src/bin"), ("test", "test", "tests"),
                                  ("example", "example", "examples"), ("bench", "bench", "benches")):
            if kind != "bin":
                for t in m.get(key, []):
                    if "path" in t:
                        add(f"{kind} {t.get('name', '')}", member / t["path"])
            for f in sorted((member / folder).glob("*.rs")):
                add(f"{kind} {f.stem}", f)
            for f in sorted((member / folder).glob("*/main.rs")):
                add(f"{kind} {f.parent.name}", f)
        add("build script", member / m.get("package", {}).get("build", "build.rs"))
    return roots


def check(workspace: Path, show_edges: bool = False, out=sys.stdout) -> int:
    """Print the cycles of every crate in `workspace`; return how many strongly connected components."""
    workspace = workspace.resolve()
    scanner = Scanner(workspace)
    total, files = 0, 0
    for label, root_file in crate_roots(workspace):
        crate = scanner.build_crate(label, root_file)
        g = build_graph(crate)
        files += len(g.edges)
        node_name = {f: f"{crate.file_modules[f].name} ({scanner.rel(f)})" for f in g.edges}
        if show_edges:
            for a in sorted(g.edges, key=str):
                for b, r in sorted(g.edges[a].items(), key=lambda kv: str(kv[0])):
                    print(f"edge {label}: {node_name[a]} -> {node_name[b]}  [{scanner.rel(a)}:{r.line} {r.text}]", file=out)
        for comp in tarjan(sorted(g.edges, key=str), g.edges):
            if len(comp) < 2:
                continue
            total += 1
            members = set(comp)
            start = min(comp, key=lambda f: node_name[f])
            cycle = example_cycle(start, members, g.edges)
            names = sorted(crate.file_modules[f].name for f in comp)
            print(f"import cycle in {label}: {len(comp)} modules: {', '.join(names)}", file=out)
            print("  " + " -> ".join(node_name[f] for f in cycle), file=out)
            for a, b in zip(cycle, cycle[1:]):
                r = g.edges[a][b]
                print(f"    {scanner.rel(a)}:{r.line}: {r.text}", file=out)
            if len(comp) > 2:
                inside = [(a, b) for a in sorted(comp, key=lambda f: node_name[f]) for b in sorted(g.edges[a], key=lambda f: node_name[f]) if b in members]
                print(f"  its {len(inside)} edges:", file=out)
                for a, b in inside:
                    r = g.edges[a][b]
                    print(f"    {crate.file_modules[a].name} -> {crate.file_modules[b].name}: {scanner.rel(a)}:{r.line}: {r.text}", file=out)
    if total == 0:
        print(f"no import cycles ({files} module files in {len(crate_roots(workspace))} crate roots)", file=out)
    return total


# ------------------------------------------------------------------------------------------ self-test

SELF_TEST = {
    # a re-exports from b, b names an item defined in a: a -> b -> a
    "pub_use_cycle": {
        "Cargo.toml": '[package]\nname = "pubuse"\nversion = "0.1.0"\n',
        "src/lib.rs": "pub mod a;\npub mod b;\n",
        "src/a.rs": "pub use crate::b::Beta;\npub struct Alpha;\n",
        "src/b.rs": "pub struct Beta;\npub fn f(_: crate::a::Alpha) {}\n",
    },
    # a calls into its child b, b uses its parent's item through super::: a -> a::b -> a
    "super_cycle": {
        "Cargo.toml": '[workspace]\nmembers = ["inner"]\n',
        "inner/Cargo.toml": '[package]\nname = "inner"\nversion = "0.1.0"\n',
        "inner/src/lib.rs": "pub mod a;\n",
        "inner/src/a/mod.rs": "pub mod b;\npub struct Thing;\npub fn g() { b::helper() }\n",
        "inner/src/a/b.rs": "use super::Thing;\npub fn helper() { let _t: Option<Thing> = None; }\n",
    },
    # no cycle: facade re-exports, child -> parent without parent -> child, and cycle-looking text that is
    # a comment, a string, a raw string, a char literal next to lifetimes, an inline module, a #[cfg(test)]
    # test module, `pub(in crate::..)`, and an integration test (its own crate)
    "acyclic": {
        "Cargo.toml": '[workspace]\nmembers = ["c"]\n',
        "c/Cargo.toml": '[package]\nname = "c"\nversion = "0.1.0"\n[[bin]]\nname = "tool"\npath = "src/main.rs"\n',
        "c/src/lib.rs": "pub mod a;\npub mod b;\npub mod p;\npub use a::A;\npub struct Root;\n",
        "c/src/a.rs": (
            "// use crate::b::B;\n/* crate::b::B /* nested */ crate::b::B */\n"
            'pub const S: &str = "crate::b::B \\" crate::b::B";\n'
            'pub const R: &str = r#"crate::b::B " crate::b::B"#;\n'
            "pub fn f<'a>(x: &'a str) -> char { let _ = x; '\"' }\n"
            "pub struct A;\n"
            "mod inner { pub(in crate::a) fn g() { let _ = super::A; } }\n"
            "#[cfg(test)]\nmod tests {\n    use crate::b::B;\n    use super::*;\n}\n"
        ),
        "c/src/b.rs": "use crate::A;\npub struct B(pub A);\npub fn r() -> crate::Root { crate::Root }\n",
        "c/src/p/mod.rs": "pub mod q;\npub fn top() {}\n",
        "c/src/p/q.rs": "pub fn low() { super::top(); crate::b::r(); }\n",
        "c/src/main.rs": "mod cli;\nfn main() { cli::run(); c::a::f(\"\"); }\n",
        "c/src/cli.rs": "pub fn run() {}\n",
        "c/tests/t.rs": "use c::b::B;\n#[test]\nfn t() { let _ = B(c::A); }\n",
    },
    # an inline module folded into its file still reaches its grandparent's sibling: x -> y -> x
    "inline_cycle": {
        "Cargo.toml": '[package]\nname = "inl"\nversion = "0.1.0"\n',
        "src/lib.rs": "mod x;\nmod y;\n",
        "src/x.rs": "pub struct X;\nmod inner { use super::super::y::Y; }\n",
        "src/y.rs": "pub struct Y;\npub fn f() -> crate::x::X { crate::x::X }\n",
    },
}

EXPECTED = {
    "pub_use_cycle": ["a (src/a.rs) -> b (src/b.rs) -> a (src/a.rs)"],
    "super_cycle": ["a (inner/src/a/mod.rs) -> a::b (inner/src/a/b.rs) -> a (inner/src/a/mod.rs)"],
    "acyclic": [],
    "inline_cycle": ["x (src/x.rs) -> y (src/y.rs) -> x (src/x.rs)"],
}


def self_test() -> int:
    import io

    failures = 0
    for case, files in SELF_TEST.items():
        with tempfile.TemporaryDirectory(prefix=f"cycles-{case}-") as d:
            for rel, body in files.items():
                p = Path(d) / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(body)
            buf = io.StringIO()
            n = check(Path(d), out=buf)
            text = buf.getvalue()
            cycles = [l.strip() for l in text.splitlines() if " -> " in l and l.startswith("  ") and not l.startswith("    ")]
            ok = cycles == EXPECTED[case] and n == len(EXPECTED[case])
            print(f"self-test {case}: {'ok' if ok else 'FAILED'}")
            if not ok:
                failures += 1
                print(f"  expected {EXPECTED[case]}\n  got:\n" + text)
    # the lexer on its own: nothing of a comment or literal survives, lifetimes do
    masked = mask_source("a // x\nb /* y */ \"z\\\"\" r#\"w\"# 'q' '\\n' &'a T b'c'")
    ok = not any(ch in masked for ch in "xyzwqn") and "'a" in masked
    print(f"self-test lexer: {'ok' if ok else 'FAILED'}")
    failures += 0 if ok else 1
    return 1 if failures else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workspace", nargs="?", default=str(Path(__file__).resolve().parent.parent))
    ap.add_argument("--self-test", action="store_true", help="check the checker on tiny temporary crates")
    ap.add_argument("--edges", action="store_true", help="print every edge too")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    ws = Path(args.workspace)
    if not (ws / "Cargo.toml").is_file():
        print(f"error: no Cargo.toml in {ws}", file=sys.stderr)
        return 2
    try:
        n = check(ws, show_edges=args.edges)
    except (OSError, tomllib.TOMLDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if n:
        print(f"{n} import cycle(s): a module must not depend on itself through other modules", file=sys.stderr)
    return 1 if n else 0


if __name__ == "__main__":
    sys.exit(main())
