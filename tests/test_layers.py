"""The package's import structure: layers point down, and the only circle is the models' self-registration."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "upscale"

#: Bottom to top. A module may import modules of its own layer and of the layers below, never above.
LAYERS = (
    (
        "core",
        (
            "upscale",
            "upscale.errors",
            "upscale.constants",
            "upscale.variables",
            "upscale.physics",
            "upscale.distribution",
            "upscale.outputs",
            "upscale.encoding",
            "upscale.devices",
            "upscale.recipe",
            "upscale.cluster",
            "upscale.rundir",
        ),
    ),
    ("sources", ("upscale.sources",)),
    ("features", ("upscale.features",)),
    ("models", ("upscale.models",)),
    (
        "training",
        (
            "upscale.ensemble",
            "upscale.batching",
            "upscale.members",
            "upscale.train",
            "upscale.bundle",
            "upscale.folds",
            "upscale.metrics",
            "upscale.baselines",
            "upscale.evaluation",
        ),
    ),
    ("store/cf", ("upscale.store", "upscale.cf")),
    ("apply", ("upscale.apply", "upscale.prepared", "upscale.aggregate", "upscale.export")),
    ("explain", ("upscale.explain",)),
    ("report", ("upscale.report",)),
    ("pipeline", ("upscale.pipeline",)),
    ("cli", ("upscale.cli",)),
)
#: The one allowed circle: the registry imports the built-in models, which register themselves in it.
SELF_REGISTRATION = {
    "upscale.models.registry",
    "upscale.models.mlp",
    "upscale.models.lstm",
    "upscale.models.hybrid",
    "upscale.models.trees",
}


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports (anywhere in the file, lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".")[: len(name.split(".")) - node.level + (path.name == "__init__.py")]
                base = ".".join(package + ([node.module] if node.module else []))
            candidates = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                found.add(candidate)
    return found


def layer_of(name: str) -> int:
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    if best is None:
        raise AssertionError(f"module {name} is in no layer: add it to LAYERS")
    return best[0]


GRAPH = {name: imports_of(name, path, module_names()) for name, path in module_names().items()}


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_no_module_imports_a_higher_layer(name):
    upward = sorted(d for d in GRAPH[name] if layer_of(d) > layer_of(name))
    assert not upward, f"{name} ({LAYERS[layer_of(name)][0]}) imports higher layers: " + ", ".join(
        f"{d} ({LAYERS[layer_of(d)][0]})" for d in upward
    )


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components with more than one module (the import circles)."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(component)

    for v in graph:
        if v not in index:
            visit(v)
    return circles


def test_the_only_import_circle_is_model_self_registration():
    assert [c for c in strongly_connected(GRAPH) if c != SELF_REGISTRATION] == []


def test_the_circle_finder_finds_a_circle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_the_apply_kernel_and_encoding_import_no_xarray_catalog_or_recipe():
    """What every worker's kernel imports: the ensemble and the encoding stay numpy/torch only."""
    for name in ("upscale.ensemble", "upscale.encoding", "upscale.outputs"):
        tree = ast.parse(module_names()[name].read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not imported & {
            "xarray",
            "yaml",
            "pydantic",
            "upscale.sources.catalog",
            "upscale.recipe",
            "upscale.features",
        }, name


def test_cf_and_apply_do_not_import_the_models():
    """Parameter maps come from the bundle's record, so the CF layer and the apply wiring need no torch models."""
    for name in ("upscale.cf", "upscale.apply", "upscale.store"):
        assert not {d for d in GRAPH[name] if d.startswith("upscale.models")}, name
