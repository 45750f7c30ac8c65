"""The package layout keeps its rules: imports point down, no cycles, no private names across.

Every module's AST is walked: module-level and function-level imports, and the ``"kzoo.x"``
strings that lazy package faces and ``importlib.import_module`` calls name. The rules (see
README, "Where things live"):

1. an import between two units (a top-level package or module of kzoo) points to a lower layer;
   units on one layer never import each other;
2. no import cycle between modules, packages' faces included;
3. no underscore name (a private module or a private attribute) is imported from another unit;
4. a function-level import of a kzoo module is there only to keep Keras or an optional
   dependency out of start-up: the module it imports must import one of them.

Each violation names its file and line. The checker is also run on planted bad packages, to
show that it fails.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# unit -> layer; a module belongs to the longest unit that prefixes it
LAYERS: dict[str, int] = {
    "kzoo.suggest": 0,
    "kzoo.lazy": 0,
    "kzoo.errors": 1,
    **dict.fromkeys(
        (
            "kzoo.dsl",
            "kzoo.layers",
            "kzoo.download",
            "kzoo.converters",
            "kzoo.diagnostics",
            "kzoo.datasets",
            "kzoo.taps",
            "kzoo.backend",
            "kzoo.gradients",
            "kzoo.images",
        ),
        2,
    ),
    **dict.fromkeys(
        ("kzoo.builder", "kzoo.synthetic", "kzoo.plots", "kzoo.deploy", "kzoo.datacheck"), 3
    ),
    **dict.fromkeys(("kzoo.zoo", "kzoo.loop", "kzoo.report"), 4),
    **dict.fromkeys(("kzoo.transfer_learning", "kzoo.losses"), 5),
    "kzoo.input_optimization": 6,
    **dict.fromkeys(("kzoo", "kzoo.tokens"), 7),  # the face, and the deprecated alias
    "kzoo.cli": 8,
    "kzoo.__main__": 9,
}

# what a function-level import may exist for (the optional extras, and Keras itself)
HEAVY = {
    "keras", "tensorflow", "jax", "torch", "matplotlib", "PIL", "onnxruntime", "onnx",
    "tf2onnx", "ai_edge_litert", "tflite_runtime", "openvino", "mlxtend",
}  # fmt: skip


@dataclass
class Tree:
    """The modules of one package tree and what each imports."""

    modules: dict[str, Path]
    edges: dict[str, list[tuple[str, int, bool]]] = field(
        default_factory=dict
    )  # (target, line, nested)
    third_party: dict[str, set[str]] = field(default_factory=dict)  # module-level only
    anywhere: dict[str, set[str]] = field(default_factory=dict)  # function level too


def read_tree(root: Path, package: str) -> Tree:
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    tree = Tree(modules)
    for name, path in modules.items():
        _read_module(tree, name, path, package)
    return tree


def _resolve(tree: Tree, dotted: str) -> str | None:
    while dotted and dotted not in tree.modules:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def _read_module(tree: Tree, name: str, path: Path, package: str) -> None:
    source = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    edges, third = tree.edges.setdefault(name, []), tree.third_party.setdefault(name, set())
    anywhere = tree.anywhere.setdefault(name, set())
    nested_lines = {
        node.lineno
        for fn in ast.walk(source)
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(fn)
        if isinstance(node, ast.Import | ast.ImportFrom)
    }
    type_checking = {
        node.lineno
        for block in ast.walk(source)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
        if hasattr(node, "lineno")
    }
    for node in ast.walk(source):
        targets: list[tuple[str, str | None]] = []  # (module, imported attribute)
        if isinstance(node, ast.Import):
            targets = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            for alias in node.names:
                full = f"{module}.{alias.name}"
                targets.append((full, None) if full in tree.modules else (module, alias.name))
        elif isinstance(node, ast.Dict | ast.Call):
            # lazy faces map names to "module:attribute" strings; import_module takes a name
            if isinstance(node, ast.Dict):
                strings = node.values
            elif ast.unparse(node.func).endswith("import_module"):
                strings = node.args[:1]
            else:
                continue
            for value in strings:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    text = value.value.partition(":")[0]
                    if text.startswith(package + ".") and text in tree.modules:
                        edges.append((text, value.lineno, "lazy", None))
            continue
        else:
            continue
        if node.lineno in type_checking:
            continue
        where = "function" if node.lineno in nested_lines else "top"
        for module, attribute in targets:
            top = module.split(".")[0]
            if top != package:
                anywhere.add(top)
                if where == "top":
                    third.add(top)
                continue
            target = _resolve(tree, module)
            if target is None:
                continue
            shown = module + (f".{attribute}" if attribute else "")
            private = any(_private(part) for part in shown.split("."))
            edges.append((target, node.lineno, where, shown if private else None))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _unit(module: str, layers: Mapping[str, int] = LAYERS) -> str | None:
    best = None
    for unit in layers:
        if "." not in unit and module != unit:
            continue  # the package's face is a unit of its own, not a home for new packages
        if (module == unit or module.startswith(unit + ".")) and (
            best is None or len(unit) > len(best)
        ):
            best = unit
    return best


def _heavy(tree: Tree, module: str, seen: set[str] | None = None) -> bool:
    """Whether importing ``module`` imports Keras or an optional dependency."""
    seen = seen if seen is not None else set()
    if module in seen:
        return False
    seen.add(module)
    if tree.third_party.get(module, set()) & HEAVY:
        return True
    return any(
        _heavy(tree, target, seen)
        for target, _, where, _ in tree.edges.get(module, [])
        if where == "top"
    )


def cycles(tree: Tree) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph = {m: {t for t, *_ in tree.edges.get(m, []) if t != m} for m in tree.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def violations(tree: Tree, layers: Mapping[str, int] = LAYERS) -> list[str]:
    """Every broken rule, one line each, naming the file and line."""
    problems = []
    for component in cycles(tree):
        lines = [
            f"{tree.modules[m]}:{line} imports {t}"
            for m in component
            for t, line, *_ in tree.edges.get(m, [])
            if t in component
        ]
        problems.append(f"import cycle between {', '.join(component)}: " + "; ".join(lines))
    for module, edges in tree.edges.items():
        unit = _unit(module, layers)
        for target, line, kind, private in edges:
            other = _unit(target, layers)
            where = f"{tree.modules[module]}:{line}"
            if unit is None or other is None:
                problems.append(f"{where}: {module} or {target} is in no layer of the table")
                continue
            if private and unit != other:
                problems.append(f"{where}: {module} imports private {private}")
            if unit != other and layers[other] >= layers[unit]:
                direction = "up" if layers[other] > layers[unit] else "sideways"
                problems.append(
                    f"{where}: {module} (layer {layers[unit]}) imports {target} "
                    f"(layer {layers[other]}): {direction}"
                )
            if kind == "function" and unit != other and not _heavy(tree, target):
                problems.append(
                    f"{where}: {module} imports {target} inside a function, but it needs "
                    "neither Keras nor an optional dependency: import it at the top"
                )
    return problems


def test_the_package_keeps_the_layer_rules():
    tree = read_tree(ROOT, "kzoo")
    assert len(tree.modules) > 40
    assert violations(tree) == []


def test_every_unit_of_the_table_exists_and_every_module_has_a_layer():
    tree = read_tree(ROOT, "kzoo")
    assert all(_unit(module) is not None for module in tree.modules)
    present = {_unit(module) for module in tree.modules}
    missing = set(LAYERS) - present
    # units the table reserves for code that does not exist yet would hide a typo
    assert missing == set(), missing


def _plant(tmp_path: Path, files: dict[str, str]) -> Tree:
    for relative, text in files.items():
        path = tmp_path / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return read_tree(tmp_path, "pkg")


PLANTED_LAYERS = {"pkg": 9, "pkg.low": 1, "pkg.high": 2, "pkg.other": 1}


def test_a_planted_cycle_is_found_with_its_files_and_lines(tmp_path):
    tree = _plant(
        tmp_path,
        {
            "__init__.py": "",
            "low/__init__.py": "from pkg.low import b\n",
            "low/a.py": "def f():\n    from pkg.low import b\n",
            "low/b.py": "from pkg.low import a\n",
        },
    )
    found = violations(tree, PLANTED_LAYERS)
    assert any("import cycle between pkg.low.a, pkg.low.b" in p for p in found), found
    cycle = next(p for p in found if "cycle" in p)
    assert "a.py:2 imports pkg.low.b" in cycle and "b.py:1 imports pkg.low.a" in cycle


def test_planted_upward_sideways_and_private_imports_are_each_reported(tmp_path):
    tree = _plant(
        tmp_path,
        {
            "__init__.py": "",
            "low/__init__.py": "from pkg.high import thing\n",
            "low/_secret.py": "X = 1\n",
            "other.py": "from pkg.low import _secret\nfrom pkg.low import helper\n",
            "high.py": "from pkg.low._secret import X\nthing = 1\n\n"
            "def f():\n    import pkg.other\n",
        },
    )
    found = "\n".join(violations(tree, PLANTED_LAYERS))
    assert "low/__init__.py:1: pkg.low (layer 1) imports pkg.high (layer 2): up" in found
    assert "other.py:2: pkg.other (layer 1) imports pkg.low (layer 1): sideways" in found
    assert "other.py:1: pkg.other imports private pkg.low._secret" in found
    assert "high.py:1: pkg.high imports private pkg.low._secret" in found
    assert "high.py:5: pkg.high imports pkg.other inside a function" in found


def test_the_notation_never_imports_keras_or_the_builder():
    tree = read_tree(ROOT, "kzoo")
    notation = [m for m in tree.modules if _unit(m) == "kzoo.dsl"]
    assert len(notation) >= 8
    for module in notation:
        assert not tree.anywhere[module] & HEAVY, module
        assert all(
            _unit(t) in ("kzoo.dsl", "kzoo.errors", "kzoo.suggest") for t, *_ in tree.edges[module]
        )
