"""The package's shape: imports flow one way, from the command line down to the numeric
kernels, with no circle; and the cheap entrances stay cheap."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "harness"

# Bottom to top: a module may import from its own layer's packages or lower layers only.
LAYERS = [
    ("harness", "errors", "limits", "io", "tomlfile", "rundir"),
    ("numerics",),
    ("maps", "stats"),
    ("model",),
    ("measures",),
    ("salience",),
    ("results",),
    ("execution",),
    ("inputs",),
    ("runner",),
    ("report",),
    ("sequential",),
    ("explain", "run", "parity"),
    ("cli",),
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = ["harness", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """The harness modules ``path`` imports, anywhere in the file (deferred imports
    inside functions make circles too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "harness"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "harness":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return {m for m in found if m in MODULES}


GRAPH = {name: imports(path) for name, path in MODULES.items()}


def layer(module: str) -> int:
    parts = module.split(".")
    return RANK["harness" if len(parts) == 1 else parts[1]]


def test_every_module_has_a_layer():
    assert all(len(m.split(".")) == 1 or m.split(".")[1] in RANK for m in MODULES), \
        sorted(m for m in MODULES if len(m.split(".")) > 1 and m.split(".")[1] not in RANK)


def test_no_import_goes_up_a_layer():
    upward = sorted(f"{src} imports {dst}" for src, dsts in GRAPH.items() for dst in dsts
                    if layer(dst) > layer(src))
    assert not upward, "\n".join(upward)


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (a list of modules, first repeated last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                circle = visit(nxt)
                if circle:
                    return circle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            circle = visit(node)
            if circle:
                return circle
    return None


def test_no_import_circle():
    assert find_circle(GRAPH) is None, " -> ".join(find_circle(GRAPH))


def test_the_circle_finder_finds_circles():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def loaded_after(code: str) -> set[str]:
    """Which of Numba and ONNX Runtime a fresh interpreter holds after ``code``."""
    probe = (f"import sys\n{code}\n"
             "print('loaded:', *(m for m in ('numba', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=ROOT.parent, check=True).stdout
    return set(out.splitlines()[-1].split()[1:])


def test_cheap_entrances_load_neither_numba_nor_onnxruntime():
    assert loaded_after("import harness.inputs.zoo") == set()
    assert loaded_after("import harness.model.spec") == set()
    help_code = ("from harness.cli import cli\n"
                 "try:\n    cli(['--help'], prog_name='harness')\nexcept SystemExit:\n    pass\n"
                 "for command in ('run', 'salience', 'gate'):\n"
                 "    try:\n        cli([command, '--help'], prog_name='harness')\n"
                 "    except SystemExit:\n        pass")
    assert loaded_after(help_code) == set()
    # the probe itself can see them
    assert loaded_after("import harness.salience.occlusion") == {"numba"}
