"""The layout the code map promises: imports run down the seminar's chain, utils/ knows nothing
of the GAN, and only training/checkpoint.py knows what is inside a checkpoint."""
import ast
import pathlib

from conftest import ROOT
from training import checkpoint

COMMANDS = {"train", "sample", "export", "evaluate", "bench", "prepro", "classify"}
LIBRARY = {"config", "ops", "augment", "model", "solver", "data", "training", "metrics", "utils"}
# Each module, and the project modules it must not import: nothing imports back up the chain.
ABOVE = {"ops": {"model", "solver", "training"}, "augment": {"model", "solver", "training"},
         "model": {"solver", "training", "metrics"},
         "solver": {"training", "metrics", "data"}, "data": {"model", "solver", "training"}}


def project_modules():
    """{dotted name: path} of every module of the project but the tests."""
    root = pathlib.Path(ROOT)
    return {".".join(p.relative_to(root).with_suffix("").parts): p for p in root.rglob("*.py")
            if not {"tests", ".venv", ".git"} & set(p.relative_to(root).parts)}


def imports(path):
    """The top-level project packages or modules that the file imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_imports_run_down_the_chain_and_no_library_imports_a_command():
    modules = project_modules()
    for name, path in modules.items():
        found = imports(path)
        if name.split(".")[0] in LIBRARY:
            assert not found & COMMANDS, (name, found & COMMANDS)
        assert not found & ABOVE.get(name, set()), (name, found & ABOVE[name])


def test_utils_knows_nothing_of_the_gan():
    project = {name.split(".")[0] for name in project_modules()}
    for name, path in project_modules().items():
        if name.startswith("utils."):
            assert imports(path) & project <= {"utils", "config"}, name


def test_only_the_checkpoints_home_reads_inside_a_checkpoint():
    inside = checkpoint.value("")  # how a checkpoint's keys end: NAME/.ATTRIBUTES/...
    for path in pathlib.Path(ROOT).rglob("*.py"):
        if ".venv" not in path.parts and path.name != "checkpoint.py":
            assert inside not in path.read_text(), path
