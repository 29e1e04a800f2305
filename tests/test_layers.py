"""The layer order of docs/architecture.md, enforced: every import in src/inpaintseg (those inside functions
included) is parsed with `ast` and mapped to the doc's layer table; a module may import its own layer and
the ones below, never a higher one, and only `cli` / `commands` import `cli` / `commands`. The doc's module
tree must list exactly the modules that exist. The checker works on any tree, so a planted violation in a
temporary tree proves the test can fail."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "inpaintseg"
SRC = REPO / "src" / PACKAGE
DOC = REPO / "docs" / "architecture.md"


# ---- the doc --------------------------------------------------------------------------------------------------

def doc_layers(text: str) -> dict[str, int]:
    """{spec: layer} from the numbered list after "Layers, lowest first": each backticked name is a module
    path below the package (`errors`, `data/input_spec`, `__init__` for the package root) or a folder
    pattern (`data/*`: every module under data/ without an entry of its own)."""
    section = text.split("Layers, lowest first", 1)[1].split("\n\n", 1)[0]
    layers: dict[str, int] = {}
    number = None
    for line in section.splitlines():
        head = re.match(r"(\d+)\. ", line)
        if head:
            number = int(head.group(1))
        elif number is None:  # the sentence introducing the list
            continue
        elif not line.startswith(" "):
            break
        for spec in re.findall(r"`([A-Za-z0-9_/*]+)`", line):
            if spec in layers:
                raise ValueError(f"{spec} appears twice in the layer table")
            layers[spec] = number
    return layers


def doc_tree(text: str) -> set[str]:
    """Module paths (`data/pairing`, `__init__`, `evaluation/report/build`) listed in the doc's tree block
    (the fenced block starting with `src/inpaintseg/`): a line starting (two-space indent) with `dir/` lists
    files of dir/, a deeper-indented line continues the folder above, any other line lists top-level files.
    Sub-package files are written with their folder (`report/build.py`); words not ending in .py are notes."""
    block = text.split("```\nsrc/inpaintseg/\n", 1)[1].split("```", 1)[0]
    found: set[str] = set()
    folder = ""
    for line in block.splitlines():
        tokens = line.split()
        if not tokens:
            continue
        if len(line) - len(line.lstrip()) <= 2:
            folder = tokens[0] if tokens[0].endswith("/") else ""
        found |= {folder + t[:-3] for t in tokens if t.endswith(".py")}
    return found


# ---- the tree -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Import:
    module: str  # importer, dotted (`inpaintseg.data.pairing`)
    line: int
    target: str  # imported module, dotted


def module_names(src: Path) -> dict[str, Path]:
    """{dotted module name: file} for every .py file under `src` (the package folder)."""
    names = {}
    for path in sorted(src.rglob("*.py")):
        parts = (src.name, *path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def lazy_exports(path: Path, package: str) -> dict[str, str]:
    """A package `__init__`'s `_EXPORTS = {name: module}` (PEP 562 lazy attributes) with full module names."""
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets)
                and isinstance(node.value, ast.Dict)):
            out = {}
            for key, value in zip(node.value.keys, node.value.values):
                name, module = ast.literal_eval(key), ast.literal_eval(value)
                out[name] = module if module.startswith(package.split(".")[0] + ".") else f"{package}.{module}"
            return out
    return {}


def imports(src: Path) -> list[Import]:
    """Every import of a package module, anywhere in each file (function bodies and TYPE_CHECKING blocks
    included). `from pkg import name` targets pkg.name when that is a module, the module a lazy `_EXPORTS`
    entry names, else pkg itself."""
    names = module_names(src)
    exports = {m: lazy_exports(p, m) for m, p in names.items() if p.name == "__init__.py"}
    found = []
    for module, path in names.items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [Import(module, node.lineno, a.name) for a in node.names
                          if a.name.split(".")[0] == src.name]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if source.split(".")[0] != src.name:
                    continue
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    target = sub if sub in names else exports.get(source, {}).get(alias.name, source)
                    found.append(Import(module, node.lineno, target))
    return found


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    """The layer of a dotted module: its own entry, else the nearest `folder/*` pattern above it."""
    parts = module.split(".")[1:]
    path = "/".join(parts) if parts else "__init__"
    if path in layers:
        return layers[path]
    for i in range(len(parts), 0, -1):
        pattern = "/".join(parts[:i]) + "/*"
        if pattern in layers:
            return layers[pattern]
    return None


def violations(src: Path, layers: dict[str, int]) -> list[str]:
    """One line per module without a layer and per import of a higher layer (or of the CLI from the library)."""
    out = [f"{m}: no layer in the table" for m in module_names(src) if layer_of(m, layers) is None]
    cli = (f"{src.name}.cli", f"{src.name}.commands")
    for imp in dict.fromkeys(imports(src)):  # one line per (module, line, target)
        low, high = layer_of(imp.module, layers), layer_of(imp.target, layers)
        if low is None or high is None:
            continue
        where = f"{imp.module} (line {imp.line}) imports {imp.target}"
        if high > low:
            out.append(f"{where}: layer {low} imports layer {high}")
        elif imp.target.startswith(cli) and not imp.module.startswith(cli):
            out.append(f"{where}: only cli and commands import cli and commands")
    return out


# ---- the tests ------------------------------------------------------------------------------------------------

def test_no_import_reaches_a_higher_layer():
    bad = violations(SRC, doc_layers(DOC.read_text()))
    assert not bad, "imports against docs/architecture.md's layer order:\n" + "\n".join(bad)


def test_every_layer_entry_names_something_that_exists():
    names = module_names(SRC)
    for spec in doc_layers(DOC.read_text()):
        dotted = ".".join([PACKAGE, *spec.rstrip("/*").split("/")]) if spec != "__init__" else PACKAGE
        assert dotted in names, f"docs/architecture.md's layer table names {spec}, which does not exist"


def test_doc_tree_lists_exactly_the_modules():
    listed = doc_tree(DOC.read_text())
    actual = {"/".join(p.relative_to(SRC).with_suffix("").parts) for p in SRC.rglob("*.py")}
    actual = {m for m in actual if not m.endswith("__init__")} | {"__init__"}
    assert sorted(actual - listed) == [], "modules missing from docs/architecture.md's tree"
    assert sorted(listed - actual) == [], "docs/architecture.md's tree lists modules that do not exist"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    src = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return src


LAYERS = {"__init__": 1, "base": 1, "low/*": 2, "low/spec": 1, "api": 3, "cli": 4, "commands/*": 4}
FILES = {"base.py": "import os\n", "low/__init__.py": "", "low/spec.py": "from pkg import base\n",
         "low/thing.py": "from pkg.low import spec\nfrom . import spec as s2\n", "api.py": "import pkg.low.thing\n",
         "cli.py": "from pkg import api\n", "commands/__init__.py": "", "commands/run.py": "from ..api import x\n"}


def test_a_clean_tree_passes(tmp_path):
    assert violations(_tree(tmp_path, FILES), LAYERS) == []


@pytest.mark.parametrize("module, source, expected", [
    # an import inside a function body of the lowest layer, reaching the top
    ("base.py", "def f():\n    from pkg.api import load\n", "pkg.base (line 2) imports pkg.api: layer 1 imports layer 3"),
    # a relative import from a layer-1 module inside a layer-2 folder
    ("low/spec.py", "from . import thing\n", "pkg.low.spec (line 1) imports pkg.low.thing: layer 1 imports layer 2"),
    ("low/thing.py", "from ..api import x\n", "pkg.low.thing (line 1) imports pkg.api: layer 2 imports layer 3"),
    ("low/thing.py", "import typing\nif typing.TYPE_CHECKING:\n    import pkg.cli\n",
     "pkg.low.thing (line 3) imports pkg.cli: layer 2 imports layer 4"),
    # the same layer as cli, but still not allowed to import it
    ("extra.py", "from pkg.commands import run\n",
     "pkg.extra (line 1) imports pkg.commands.run: only cli and commands import cli and commands"),
    # a lazy export of the package root resolves to the module behind it
    ("low/thing.py", "from pkg import load\n", "pkg.low.thing (line 1) imports pkg.api: layer 2 imports layer 3"),
])
def test_a_planted_violation_is_found(tmp_path, module, source, expected):
    files = {**FILES, module: source, "__init__.py": '_EXPORTS = {"load": "pkg.api"}\n'}
    layers = {**LAYERS, "extra": 4}
    assert expected in violations(_tree(tmp_path, files), layers)


def test_a_module_without_a_layer_is_found(tmp_path):
    src = _tree(tmp_path, {**FILES, "stray.py": "import os\n"})
    assert violations(src, LAYERS) == ["pkg.stray: no layer in the table"]


def test_doc_parsers_read_the_table_and_the_tree():
    text = ("x\n```\nsrc/inpaintseg/\n  __init__.py  api.py      public API\n  data/   a.py  b.py\n"
            "          c.py\n  evaluation/  d.py  static/\n               report/e.py\n  cli.py\n```\n"
            "Layers, lowest first (a `note`\nover two lines):\n1. `errors`, `data/a`\n   `data/b`\n2. `data/*`\n\nmore `x`\n")
    assert doc_layers(text) == {"errors": 1, "data/a": 1, "data/b": 1, "data/*": 2}
    assert doc_tree(text) == {"__init__", "api", "data/a", "data/b", "data/c", "evaluation/d",
                              "evaluation/report/e", "cli"}
