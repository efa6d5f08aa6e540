"""The house stays in place: an AST scan of nmt/ for import cycles, imports that run up the pipeline,
and files or functions over their length budget. Imports inside functions count: a lazy import is
still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

NMT = Path(__file__).resolve().parent.parent / "nmt"

# The pipeline, bottom up: a stage may import the stages below it, and itself. Stages that share a
# row are side by side and import neither one the other (the model knows nothing of the data).
PIPELINE = [
    ["nmt.errors", "nmt.vocab"],
    ["nmt.typed_yaml"],
    ["nmt.config", "nmt.precision"],
    ["nmt.data", "nmt.model"],
    ["nmt.checkpoint", "nmt.search", "nmt.evaluate"],
    ["nmt.average", "nmt.translate"],
    ["nmt.train"],
    ["nmt.cli"],
    ["nmt.serve"],
]
# Entry points run every stage: the package's lazy `from nmt import Translator` and `python -m` runners.
ENTRY_POINTS = {"nmt", "nmt.__main__", "nmt.train.__main__"}

MAX_FILE_LINES, MAX_FUNCTION_LINES = 250, 60
LONG_FILES: dict[str, str] = {  # path -> why it may be longer
    "nmt/config.py": "every setting's default and help lives in one field here (STYLE 2); a section per dataclass",
}
LONG_FUNCTIONS: dict[str, str] = {}  # path:function -> why


def module_name(path: Path, root: Path = NMT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST, modules: set[str]) -> set[str]:
    """The nmt modules `tree` imports, anywhere in it: `from nmt.data import splits` names the
    module nmt.data.splits, `from nmt.data.splits import load_split` the same."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                     for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def import_graph(root: Path = NMT) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    return {name: imported_modules(ast.parse(path.read_text(encoding="utf-8")), set(files)) - {name}
            for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected component of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def stage(module: str) -> tuple[int, str]:
    """(row in PIPELINE, the stage's name) of a module."""
    for row, names in enumerate(PIPELINE):
        for name in names:
            if module == name or module.startswith(name + "."):
                return row, name
    raise AssertionError(f"{module}: in no stage of the pipeline; add it to PIPELINE in {__file__}")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, imports in sorted(graph.items()):
        if module in ENTRY_POINTS:
            continue
        row, name = stage(module)
        for target in sorted(imports - {"nmt"}):  # the package itself: its __version__
            target_row, target_name = stage(target)
            if target_name != name and target_row >= row:
                side = "beside" if target_row == row else "above"
                wrong.append(f"{module} imports {target}, a stage {side} it")
    return wrong


def long_code(root: Path = NMT) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = str(path.relative_to(root.parent))
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_FILE_LINES and rel not in LONG_FILES:
            found.append(f"{rel}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and f"{rel}:{node.name}" not in LONG_FUNCTIONS:
                    found.append(f"{rel}:{node.name}: {lines} lines")
    return found


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_imports_run_down_the_pipeline():
    assert upward_imports(import_graph()) == []


def test_files_and_functions_within_budget():
    assert long_code() == []


def test_every_stage_says_what_it_is():
    for package in sorted(p.parent for p in NMT.rglob("__init__.py")):
        tree = ast.parse((package / "__init__.py").read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{package}/__init__.py has no docstring"


def test_readme_layout_table_lists_every_module():
    readme = (NMT.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## How the code is laid out")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `nmt/")]
    missing = []
    for path in sorted(NMT.rglob("*.py")):
        rel = path.relative_to(NMT.parent)
        if path.name == "__init__.py":
            continue
        folder = f"`{rel.parent}/`:"
        if not any(f"`{rel}`" in row or (folder in row and f"`{path.name}`" in row) for row in rows):
            missing.append(str(rel))
    assert missing == []


def _tree(tmp_path, files: dict[str, str]) -> Path:
    root = tmp_path / "nmt"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_scan_sees_a_cycle_through_a_function_level_import(tmp_path):
    root = _tree(tmp_path, {"train/__init__.py": "", "cli/__init__.py": "",
                            "train/loop.py": "def main():\n    from nmt.cli.commands import train_main\n",
                            "cli/commands.py": "from nmt.train import loop\n"})
    assert cycles(import_graph(root)) == [["nmt.cli.commands", "nmt.train.loop"]]


def test_the_scan_sees_an_upward_and_a_sideways_import(tmp_path):
    root = _tree(tmp_path, {"model/__init__.py": "", "data/__init__.py": "", "train/__init__.py": "",
                            "model/seq2seq.py": "from nmt.data.tokenizer import PAD\nfrom nmt.train import loop\n",
                            "data/tokenizer.py": "", "train/loop.py": "from nmt.model.seq2seq import Seq2Seq\n"})
    assert upward_imports(import_graph(root)) == [
        "nmt.model.seq2seq imports nmt.data.tokenizer, a stage beside it",
        "nmt.model.seq2seq imports nmt.train.loop, a stage above it"]


def test_the_scan_sees_a_long_function(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    root = _tree(tmp_path, {"search/beam.py": "def beam_search():\n" + body})
    assert long_code(root) == [f"nmt/search/beam.py:beam_search: {MAX_FUNCTION_LINES + 1} lines"]
