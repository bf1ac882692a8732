"""Architecture rules of src/, checked on the source text (ast; nothing is imported, so no torch):

1. no import cycle among the ``twostream`` modules, counting module-level imports only;
2. every ``.py`` file under src/ has fewer than ``LINE_LIMIT`` lines;
3. the generic core does not import paper code: outside ``twostream/methods/`` no module imports
   ``twostream.methods`` at module level, except the modules in ``METHODS_IMPORTERS_ALLOWED`` and
   deprecation aliases (module docstring starting "Deprecation alias").

"Module level" means what runs when the module is imported: imports inside functions (and so the
lazy ``__getattr__`` re-exports of package ``__init__`` files, which name their targets as strings)
and under ``if TYPE_CHECKING:`` are not counted; imports in class bodies, ``try``, ``with`` and
other ``if`` blocks are. An import is an edge to the most specific module it names:
``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b``; the parent
packages that Python also initialises on the way are not counted as edges.

Each rule is a helper run on a small synthetic tree as well (``tmp_path``), so that a broken
helper cannot let the real tree pass unnoticed.
"""
from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "twostream"
LINE_LIMIT = 300  # a file must stay under this many lines
METHODS = "methods"  # twostream.methods: paper code (cots, cookie, vldeformer)
METHODS_IMPORTERS_ALLOWED = {  # module -> why it may import twostream.methods at module level
    "twostream.cli": "the entry point imports every method so that configs' class_path names resolve",
}
DEPRECATION_ALIAS = "deprecation alias"  # how an alias module's docstring starts (case-insensitive)


# ---------------------------------------------------------------------------------- helpers
def discover(src: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` under ``src`` (``__init__`` = the package)."""
    modules = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_import_nodes(body: list[ast.stmt]):
    """Import statements executed when the module is imported (not in functions, not under TYPE_CHECKING)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level_import_nodes(node.body)
            yield from _module_level_import_nodes(node.orelse)
        elif isinstance(node, ast.ClassDef):
            yield from _module_level_import_nodes(node.body)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            yield from _module_level_import_nodes(node.body)
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
            yield from _module_level_import_nodes(node.body + node.orelse)
        elif isinstance(node, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            yield from _module_level_import_nodes(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                yield from _module_level_import_nodes(handler.body)
        elif isinstance(node, ast.Match):
            for case in node.cases:
                yield from _module_level_import_nodes(case.body)


def _most_specific(name: str, modules: set[str]) -> str | None:
    """``name`` or its closest enclosing module among ``modules`` (None: not one of ours)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def module_level_imports(module: str, path: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``module`` (its file: ``path``) imports at module level."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in _module_level_import_nodes(tree.body):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" if alias.name != "*" else base for alias in node.names]
        for name in names:
            target = _most_specific(name, modules)
            if target is not None and target != module:
                found.add(target)
    return found


def import_graph(src: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports at module level."""
    modules = discover(src, package)
    return {m: module_level_imports(m, p, set(modules)) for m, p in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle, as a chain ``[a, b, ..., a]``, per group of mutually importing modules."""
    index, low, on_stack, stack, groups, counter = {}, {}, set(), [], [], [0]

    def connect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(set(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    cycles = []
    for group in groups:
        start = min(group)
        parent, queue = {start: None}, deque([start])
        while queue:  # breadth-first inside the group until an edge leads back to start: a shortest cycle through it
            v = queue.popleft()
            if start in graph.get(v, ()):
                chain = [v]
                while parent[chain[-1]] is not None:
                    chain.append(parent[chain[-1]])
                cycles.append(chain[::-1] + [start])
                break
            for w in sorted(graph.get(v, ())):
                if w in group and w not in parent:
                    parent[w] = v
                    queue.append(w)
    return sorted(cycles)


def oversized_files(src: Path, limit: int = LINE_LIMIT) -> list[tuple[str, int]]:
    """(path relative to ``src``'s parent, line count) of every .py file under ``src`` with ``limit`` lines or more."""
    counts = ((path, len(path.read_text().splitlines())) for path in sorted(src.rglob("*.py")))
    return [(str(path.relative_to(src.parent)), n) for path, n in counts if n >= limit]


def is_deprecation_alias(path: Path) -> bool:
    doc = ast.get_docstring(ast.parse(path.read_text(), filename=str(path))) or ""
    return doc.lower().startswith(DEPRECATION_ALIAS)


def methods_imports(src: Path, package: str, allowed: dict[str, str] | set[str]) -> list[tuple[str, list[str]]]:
    """(module, the ``<package>.methods`` modules it imports) for every module outside ``<package>.methods``
    that imports paper code at module level, less ``allowed`` and deprecation aliases."""
    methods = f"{package}.{METHODS}"
    paper = lambda m: m == methods or m.startswith(methods + ".")  # noqa: E731
    modules = discover(src, package)
    offenders = []
    for module, path in modules.items():
        if paper(module) or module in allowed or is_deprecation_alias(path):
            continue
        imported = sorted(m for m in module_level_imports(module, path, set(modules)) if paper(m))
        if imported:
            offenders.append((module, imported))
    return offenders


# ---------------------------------------------------------------------------------- the rules on src/
def test_no_import_cycle_among_twostream_modules():
    graph = import_graph(SRC, PACKAGE)
    assert len(graph) > 10, f"found only {len(graph)} modules under {SRC / PACKAGE}"
    cycles = find_cycles(graph)
    assert not cycles, "module-level import cycles:\n" + "\n".join("  " + " -> ".join(c) for c in cycles)


def test_every_source_file_is_under_the_line_limit():
    too_long = oversized_files(SRC)
    assert not too_long, (f"files under src/ with {LINE_LIMIT} lines or more (split them):\n"
                          + "\n".join(f"  {path}: {n} lines" for path, n in too_long))


def test_core_does_not_import_paper_code():
    offenders = methods_imports(SRC, PACKAGE, METHODS_IMPORTERS_ALLOWED)
    assert not offenders, (f"modules outside {PACKAGE}.{METHODS} that import it at module level (import it inside "
                           f"the function that needs it, or move the module into {PACKAGE}/{METHODS}/):\n"
                           + "\n".join(f"  {m}: {', '.join(targets)}" for m, targets in offenders))


def test_allowed_methods_importers_exist():
    modules = discover(SRC, PACKAGE)
    assert set(METHODS_IMPORTERS_ALLOWED) <= set(modules), set(METHODS_IMPORTERS_ALLOWED) - set(modules)


# ---------------------------------------------------------------------------------- the helpers on a synthetic tree
def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_find_cycles_reports_a_chain_and_ignores_lazy_and_type_checking_imports(tmp_path):
    src = write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "import pkg.b\n",
        "pkg/b.py": "from pkg import c\n",
        "pkg/c.py": "from . import a\n",  # relative: pkg.a, closing a -> b -> c -> a
        "pkg/sub/__init__.py": "from .leaf import X\n",
        "pkg/sub/leaf.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub import X\n"
                            "def f():\n    from pkg import sub\nclass X:\n    pass\n"),
        "pkg/d.py": "import os.path\ntry:\n    from pkg.c import name\nexcept ImportError:\n    name = None\n",
    })
    graph = import_graph(src, "pkg")
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a"}
    assert graph["pkg.sub"] == {"pkg.sub.leaf"} and graph["pkg.sub.leaf"] == set()  # TYPE_CHECKING, function: not edges
    assert graph["pkg.d"] == {"pkg.c"}  # try blocks run at import; os is not one of ours
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    (src / "pkg" / "sub" / "leaf.py").write_text("from pkg.sub import X as Y\nclass X:\n    pass\n")  # now module level
    assert find_cycles(import_graph(src, "pkg")) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"],
                                                     ["pkg.sub", "pkg.sub.leaf", "pkg.sub"]]


def test_find_cycles_on_graphs():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycles({"a": {"b", "x"}, "b": {"a"}, "x": {"y"}, "y": {"x"}}) == [["a", "b", "a"], ["x", "y", "x"]]
    # one group, several cycles: the shortest through its first module is reported
    assert find_cycles({"a": {"b"}, "b": {"c", "a"}, "c": {"a"}}) == [["a", "b", "a"]]


def test_oversized_files_reports_paths_and_counts(tmp_path):
    src = write(tmp_path / "src", {"pkg/__init__.py": "", "pkg/small.py": "x = 1\n" * 299,
                                   "pkg/big.py": "x = 1\n" * 300, "tool.py": "y = 2\n" * 400})
    assert oversized_files(src, 300) == [("src/pkg/big.py", 300), ("src/tool.py", 400)]
    assert oversized_files(src, 500) == []


def test_methods_imports_flags_the_core_and_spares_allowed_aliases_and_lazy_imports(tmp_path):
    src = write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/methods/__init__.py": "", "pkg/methods/cots/__init__.py": "from pkg.core import base\n",
        "pkg/core.py": "base = 1\n",
        "pkg/encoder.py": "from pkg.methods.cots import thing\n",  # the core importing paper code
        "pkg/heads.py": "from .methods import cots\n",  # relative, same thing
        "pkg/lazy.py": "def load():\n    from pkg.methods import cots\n    return cots\n",
        "pkg/cli.py": "import pkg.methods.cots\n",
        "pkg/old.py": '"""Deprecation alias: moved to pkg.methods.cots."""\nfrom pkg.methods.cots import thing\n',
        "pkg/lazy_init/__init__.py": "def __getattr__(name):\n    import importlib\n"
                                     "    return getattr(importlib.import_module('pkg.methods.cots'), name)\n",
    })
    assert methods_imports(src, "pkg", {"pkg.cli"}) == [("pkg.encoder", ["pkg.methods.cots"]),
                                                       ("pkg.heads", ["pkg.methods.cots"])]
    assert ("pkg.cli", ["pkg.methods.cots"]) in methods_imports(src, "pkg", set())
