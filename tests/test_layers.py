"""The layers point down only: core (data, models, strategies, learner, metrics, results) ->
experiments -> interface (commands, cli), and no module imports itself in a circle. Imports are
read with ``ast``, those inside functions included, so a lazy import cannot hide a cycle."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "forgetless"
CORE = ("data", "models", "strategies", "learner", "metrics", "results")
UPPER = ("forgetless.experiments", "forgetless.commands", "forgetless.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except what sits under ``if TYPE_CHECKING:`` (never imported
    when the program runs)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *runtime_nodes(child)])
            continue
        yield node
        yield from runtime_nodes(node)


def imports_of(path: Path) -> set[str]:
    """Every forgetless module ``path`` imports when it runs, at any depth of the file
    (function-level imports included)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import module`
    return {m for m in found if m.split(".")[0] == "forgetless"}


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name}
            for name, path in modules.items()}


def is_core(module: str) -> bool:
    return any(module == f"forgetless.{c}" or module.startswith(f"forgetless.{c}.")
               for c in CORE)


def test_the_core_never_imports_the_experiments_or_the_interface():
    offending = sorted(f"{module} imports {target}" for module, targets in graph().items()
                       if is_core(module) for target in targets
                       if any(target == u or target.startswith(u + ".") for u in UPPER))
    assert not offending, offending


#: The one circle allowed, inside one concept: ``Strategy.__add__`` (base) builds a
#: ``Composite``, which subclasses ``Strategy``; base imports composite inside ``__add__``.
ALLOWED = {("forgetless.strategies.base", "forgetless.strategies.composite")}


def test_no_import_circle():
    edges = graph()
    # A package's __init__ importing its own submodules is how packages are built, not a cycle.
    edges = {m: {t for t in ts if not t.startswith(m + ".") and (m, t) not in ALLOWED}
             for m, ts in edges.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, path):
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles[:5]


def test_the_checker_sees_function_level_imports_and_skips_type_checking_ones():
    probe = PACKAGE / "learner.py"  # parsed as the package's own modules are
    found = imports_of(probe)
    assert "forgetless.strategies.bounds" in found  # imported inside Learner.__init__
    base = imports_of(PACKAGE / "strategies" / "base.py")
    assert "forgetless.strategies.composite" in base  # inside Strategy.__add__
    assert "forgetless.learner" not in base  # under `if TYPE_CHECKING:` only
