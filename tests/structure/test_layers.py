"""The package's layers, as its folders show them, and the direction of every import between them
(read from the source, so that an import against the direction fails here, not in a review)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ics_study"

# layer -> the layers it may import. The CLI composes configs and calls train(); training uses
# models, data, probes and recording; analysis reads what recording wrote. Nothing below the CLI
# knows Hydra; models, data and probes know nothing of recording, files or the training runtime.
BASE = {"config", "errors", "columns"}
ALLOWED = {
    "config": set(), "errors": set(), "columns": set(),
    "models": BASE, "data": BASE, "probes": BASE | {"models"},
    "recording": BASE,
    "validate": BASE | {"models", "data"},
    "train": BASE | {"models", "data", "probes", "recording", "validate"},
    "analysis": BASE | {"recording"},
    "compose": BASE, "hydra_errors": set(),  # Hydra's API, and its error text, are read only in these two
    "cli": None,  # the CLI may import anything
}
HYDRA = ("hydra", "omegaconf")


def layer_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imports(path: Path, where: Path | None = None) -> list[tuple[str, int]]:
    """(top-level ics_study layer or external package, line) of every import in ``path``; relative
    imports resolved as if the file sat at ``where`` (default: where it is)."""
    tree = ast.parse(path.read_text())
    package = ["ics_study", *(where or path).relative_to(PACKAGE).parent.parts]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = [*base, *(node.module.split(".") if node.module else [])]
                names = [target + [a.name] for a in node.names] if len(target) == 1 else [target]
            else:
                names = [node.module.split(".")]
            out += [(n[1] if n[0] == "ics_study" and len(n) > 1 else n[0], node.lineno) for n in names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                out.append((parts[1] if parts[0] == "ics_study" and len(parts) > 1 else parts[0], node.lineno))
    return out


def test_every_module_belongs_to_a_layer():
    modules = [p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE]
    assert {layer_of(p) for p in modules} <= set(ALLOWED), {layer_of(p) for p in modules} - set(ALLOWED)


def test_imports_follow_the_direction_of_the_layers():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent == PACKAGE and path.name == "__init__.py":
            continue
        layer = layer_of(path)
        allowed = ALLOWED[layer]
        if allowed is None:
            continue
        for target, line in imports(path):
            if target in ALLOWED and target != layer and target not in allowed:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({layer}) imports {target}")
            if target in HYDRA and layer not in ("compose", "hydra_errors"):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({layer}) imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_direction_check_sees_a_wrong_import(tmp_path):
    """The reader above must resolve relative imports: a probe importing the recorder is caught."""
    probe = PACKAGE / "probes" / "activations.py"
    found = dict(imports(probe))
    assert "models" in found and "config" in found
    fake = tmp_path / "x.py"
    fake.write_text("from ..recording.storage import labels\nimport ics_study.train.loop\n")
    assert [t for t, _ in imports(fake, where=PACKAGE / "probes" / "x.py")] == ["recording", "train"]


def module_graph(root: Path, package: str = "ics_study") -> dict[str, set[str]]:
    """module -> the package's modules it imports (anywhere in the file, lazily or not), as dotted
    names; ``from X import name`` counts as an import of X.name where that is a module, else of X."""
    files = {p: ".".join([package, *p.relative_to(root).with_suffix("").parts]).removesuffix(".__init__")
             for p in root.rglob("*.py")}
    modules = set(files.values())
    graph: dict[str, set[str]] = {}
    for path, name in files.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(here.split(".")[: len(here.split(".")) - node.level + 1]) if node.level else ""
                target = ".".join(x for x in (base, node.module or "") if x)
                for a in node.names:
                    edges.add(f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
        edges &= modules
        edges.discard(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: its strongly connected components of more than one module."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_itself_through_others():
    """No import cycle, a lazy import inside a function included: a cycle means two modules that
    cannot be read, tested or replaced one without the other."""
    found = cycles(module_graph(PACKAGE))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_check_sees_a_cycle_through_a_lazy_import(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "sub" / "__init__.py").write_text("from .b import f\n")
    (tmp_path / "sub" / "a.py").write_text("from . import b\n")
    (tmp_path / "sub" / "b.py").write_text("def f():\n    from .a import g\n")
    (tmp_path / "c.py").write_text("from .sub import f\nimport ics_study.sub.a\n")
    graph = module_graph(tmp_path)
    assert graph["ics_study.c"] == {"ics_study.sub", "ics_study.sub.a"}
    assert cycles(graph) == [["ics_study.sub.a", "ics_study.sub.b"]]


def late_attributes(path: Path) -> list[str]:
    """Attributes that a class's methods set without its ``__init__`` (or a method it calls, or the
    class body) setting them first, and ``getattr(self, "name", default)`` reads of such attributes:
    an object whose state is not all visible in one place."""
    out = []
    for cls in (n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef)):
        methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
        init = [methods[m] for m in ("__init__", "__post_init__") if m in methods]
        called = {c.func.attr for f in init for c in ast.walk(f) if isinstance(c, ast.Call)
                  and isinstance(c.func, ast.Attribute) and isinstance(c.func.value, ast.Name) and c.func.value.id == "self"}
        init += [methods[m] for m in called if m in methods]
        known = {t.id for n in cls.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                 for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
        known |= {a for f in init for a, _ in _self_assignments(f)}
        out += [f"{path.name}:{line} {cls.name}.{a} set in {m.name}()" for m in methods.values() if m not in init
                for a, line in _self_assignments(m) if a not in known]
        out += [f"{path.name}:{c.lineno} {cls.name}: getattr(self, {c.args[1].value!r}, default)" for c in ast.walk(cls)
                if isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id == "getattr" and len(c.args) == 3
                and isinstance(c.args[0], ast.Name) and c.args[0].id == "self" and isinstance(c.args[1], ast.Constant)]
    return out


def _self_assignments(fn: ast.FunctionDef) -> set[tuple[str, int]]:
    found = set()
    for n in ast.walk(fn):
        targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, (ast.AnnAssign, ast.AugAssign)) else []
        found |= {(e.attr, n.lineno) for t in targets for e in ast.walk(t)
                  if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name) and e.value.id == "self"}
    return found


def test_every_attribute_of_an_object_is_set_in_its_init():
    found = [x for p in PACKAGE.rglob("*.py") for x in late_attributes(p)]
    assert not found, "\n".join(found)


def test_the_attribute_check_sees_late_and_defaulted_attributes(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("class A:\n    x = 0\n    def __init__(self):\n        self.a = 1\n        self._setup()\n"
                   "    def _setup(self):\n        self.b = 2\n    def later(self):\n        self.a, self.b, self.x = 3, 4, 5\n"
                   "        self.c = getattr(self, 'd', None)\n")
    assert late_attributes(src) == ["m.py:10 A.c set in later()", "m.py:10 A: getattr(self, 'd', default)"]


def test_no_function_is_over_sixty_lines():
    """A function that does not fit a screen does several things: split it (its parts get names)."""
    long = [f"{p.relative_to(PACKAGE.parent)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for p in PACKAGE.rglob("*.py") for n in ast.walk(ast.parse(p.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60]
    assert not long, "\n".join(long)


REPO = PACKAGE.parent
SEAMS = {"GraphedStep", "wanted", "TrainStep", "Schedule"}  # train(graphed_step=...) takes a replacement


def swapped_internals(path: Path) -> list[str]:
    """Path hacks and replaced internals in a benchmark or test: ``sys.path`` edits, ``runpy``, and
    assignments or ``monkeypatch.setattr`` of the training seams that constructors take instead."""
    out = []
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute) and n.value.attr == "path" \
                and isinstance(n.value.value, ast.Name) and n.value.value.id == "sys" and n.attr in ("insert", "append"):
            out.append(f"{path.name}:{n.lineno} sys.path.{n.attr}")
        elif isinstance(n, (ast.Import, ast.ImportFrom)) and "runpy" in [a.name for a in n.names] + [getattr(n, "module", "")]:
            out.append(f"{path.name}:{n.lineno} runpy")
        elif isinstance(n, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr in SEAMS for t in n.targets):
            out.append(f"{path.name}:{n.lineno} assigns a seam")
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "setattr" and len(n.args) > 1 \
                and isinstance(n.args[1], ast.Constant) and n.args[1].value in SEAMS:
            out.append(f"{path.name}:{n.lineno} monkeypatches {n.args[1].value}")
    return sorted(out, key=lambda x: int(x.split(":")[1].split()[0]))


def test_benchmarks_and_tests_use_no_path_hacks_and_swap_no_internals():
    files = [*(REPO / "scripts").rglob("*.py"), *(REPO / "tests").rglob("*.py")]
    found = [x for p in files if p.name != "test_layers.py" for x in swapped_internals(p)]
    assert not found, "\n".join(found)


def test_the_swap_check_sees_each_kind(tmp_path):
    src = tmp_path / "b.py"
    src.write_text("import sys, runpy\nsys.path.insert(0, 'x')\nimport ics_study.train.step as m\nm.GraphedStep = object\n"
                   "def t(monkeypatch):\n    monkeypatch.setattr(m, 'wanted', None)\n")
    assert swapped_internals(src) == ["b.py:1 runpy", "b.py:2 sys.path.insert", "b.py:4 assigns a seam",
                                      "b.py:6 monkeypatches wanted"]


def test_tests_sit_in_the_folder_of_their_layer():
    """tests/unit/<package>/ mirrors ics_study's packages; helpers live in tests/helpers/, none at the top."""
    tests = REPO / "tests"
    assert not list(tests.glob("test_*.py")), "a test file at the top of tests/: move it to its layer's folder"
    unit = {p.name for p in (tests / "unit").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert unit <= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    loose = [p.relative_to(tests) for p in tests.rglob("*.py") if p.parent.name != "helpers"
             and not p.name.startswith(("test_", "__init__")) and p.name != "conftest.py"]
    assert not loose, f"helpers outside tests/helpers/: {loose}"
