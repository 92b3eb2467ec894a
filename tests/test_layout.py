"""The shape of the project: modules import in one direction only, entry points lend nothing, and
a checkpoint written before the module redesign still fits the training graph."""
import ast
import json
import os

import strategies
import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY_POINTS = {"train", "generate", "evaluate", "bench", "features"}


def project_imports():
    """{module: set of project modules it imports, anywhere in the file}."""
    modules = {name[:-3] for name in os.listdir(ROOT) if name.endswith(".py")}
    graph = {}
    for module in modules:
        with open(os.path.join(ROOT, module + ".py")) as handle:
            tree = ast.parse(handle.read())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
        graph[module] = imported & modules
    return graph


def test_no_module_imports_itself_back_directly_or_through_others():
    graph = project_imports()
    assert {"dcgan", "data", "runs", "train"} <= set(graph)  # the scan found the project

    def reachable(start):
        seen, todo = set(), list(graph[start])
        while todo:
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo.extend(graph[module])
        return seen

    cycles = [module for module in graph if module in reachable(module)]
    assert cycles == []


def test_entry_points_lend_nothing():
    graph = project_imports()
    borrowers = {module: sorted(imported & ENTRY_POINTS) for module, imported in graph.items()
                 if imported & ENTRY_POINTS}
    assert borrowers == {}


def test_a_checkpoint_from_before_the_redesign_fits_the_training_graph():
    """The names and shapes a checkpoint of train.py held before the module redesign (listed from
    one written then): the training graph must still hold exactly these variables."""
    with open(os.path.join(ROOT, "tests", "fixtures", "checkpoint_variables_v1.json")) as handle:
        expected = json.load(handle)
    args = train.parse_args(["--dataset", "svhn", "--sample-grid", "6"])
    run_graph = train.build_graph(args, output_dim=3, engine=strategies.single_device())
    with run_graph.graph.as_default():
        variables = {variable.op.name: variable.shape.as_list()
                     for variable in train.tf1.global_variables()}
    assert variables == expected
