"""The package's import layers: every module of dabench/ has a layer, imports go to its own layer
or below — deferred imports inside functions included — and no imports form a cycle.

A new module must be given a layer here (a new method module has one already: methods.*); an import that goes up (a method reading the workflow's
config, a metric importing an experiment) fails with the offending line.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dabench"

# Bottom to top. A module may import modules of its own layer and of the layers below.
LAYERS = [
    # Seeds, files, paths, the device, the model's config functions: no dabench imports.
    ("core", {"seeds", "io", "layout", "device", "architecture"}),
    # Data, the diffusion model, its training, sampling, per-example gradients, features.
    # latent: the latent / text-conditioned model family (autoencoder, text encoder, LoRA).
    ("model", {"data", "embedding", "profile", "projection", "model", "training", "gradients",
               "sampling", "features", "latent"}),
    # The LDS metric and the attribution methods with their registry.
    # (methods.*: every module of the methods package, so a new method file needs no entry.)
    ("attribution", {"metrics", "methods", "methods.*"}),
    # The validated config (it checks method entries against the registry).
    ("config", {"config"}),
    # Experiments that only compute.
    ("experiments", {"lds", "ablations", "properties", "shapley", "shapley.*", "retrac",
                     "counterfactual", "checkpoint_selection", "journey_counterfactual"}),
    # Tables, figures, cost, example grids, report pages.
    ("reporting", {"naming", "tables", "cost", "figures", "figures.*", "examples", "report",
                   "shapley_report", "retrac_report", "counterfactual_report"}),
    # What the workflow and the command line call: job set-up, resources, plans, checks.
    # warm: the warm server that local jobs fork from.
    ("workflow", {"runtime", "warm", "resources", "plan", "smoke", "gpu_check"}),
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name:
            out[name] = path
    return out


def _imports(path: Path, modules: dict) -> list[tuple[str, int]]:
    """(imported dabench module, line) of every import in the file, deferred ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "dabench" or node.module.startswith("dabench."):
                base = node.module[len("dabench."):] if node.module != "dabench" else ""
                for alias in node.names:
                    sub = f"{base}.{alias.name}" if base else alias.name
                    names.append(sub if sub in modules else base)
        elif isinstance(node, ast.Import):
            names = [a.name[len("dabench."):] for a in node.names if a.name.startswith("dabench.")]
        found += [(n, node.lineno) for n in names if n in modules]
    return found


def _layer_of() -> dict[str, int]:
    """module -> layer index, with each ``package.*`` entry expanded to the package's modules."""
    modules = _modules()
    out = {}
    for i, (_, members) in enumerate(LAYERS):
        for m in members:
            if m.endswith(".*"):
                out.update({n: i for n in modules if n.startswith(m[:-1])})
            else:
                out[m] = i
    return out


def test_every_module_has_a_layer():
    layer = _layer_of()
    missing = sorted(set(_modules()) - set(layer))
    assert not missing, f"give these dabench modules a layer in tests/test_layers.py: {missing}"
    stale = sorted(set(layer) - set(_modules()))
    assert not stale, f"tests/test_layers.py names modules that no longer exist: {stale}"


def test_imports_only_go_down():
    layer, modules = _layer_of(), _modules()
    upward = []
    for name, path in modules.items():
        for dep, line in _imports(path, modules):
            if dep != name and layer.get(dep, -1) > layer.get(name, len(LAYERS)):
                upward.append(f"dabench/{path.relative_to(PACKAGE)}:{line} ({LAYERS[layer[name]][0]}) "
                              f"imports {dep} ({LAYERS[layer[dep]][0]})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycles():
    modules = _modules()
    graph = {m: {d for d, _ in _imports(p, modules) if d != m} for m, p in modules.items()}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_deferred_and_package_imports(tmp_path):
    """The checks would catch a violation: an import inside a function, and `from dabench import x`."""
    code = ("def f():\n    from dabench.tables import write_table\n"
            "from dabench import methods\nimport dabench.lds\n")
    path = tmp_path / "probe.py"
    path.write_text(code)
    found = {d for d, _ in _imports(path, _modules())}
    assert found == {"tables", "methods", "lds"}
