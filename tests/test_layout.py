"""The shape of the project: the commands and the model at the top, everything else in one
package; imports in one direction only, commands lending nothing; the size limits. (A checkpoint
written before the module redesigns still fitting the training graph: test_training_graph.py.)"""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "machinery"
COMMANDS = {"train", "generate", "evaluate", "features", "bench", "export"}
TOP_LEVEL = COMMANDS | {"dcgan", "data"}
MAX_FILE_LINES, MAX_MODEL_LINES = 450, 400
MAX_FUNCTION_LINES, MAX_CLASS_LINES = 70, 200


def module_files():
    """{module name: path} of every Python module of the project (tests aside)."""
    files = {name[:-3]: os.path.join(ROOT, name) for name in os.listdir(ROOT)
             if name.endswith(".py")}
    folder = os.path.join(ROOT, PACKAGE)
    files.update({f"{PACKAGE}.{name[:-3]}": os.path.join(folder, name)
                  for name in os.listdir(folder) if name.endswith(".py")})
    return files


def parsed(path):
    with open(path, encoding="utf-8") as handle:
        return ast.parse(handle.read())


def project_imports():
    """{module: set of project modules it imports, anywhere in the file}."""
    files = module_files()
    graph = {}
    for module, path in files.items():
        imported = set()
        for node in ast.walk(parsed(path)):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[module] = imported & set(files)
    return graph


def test_the_top_level_holds_the_commands_and_the_model_only():
    top = {module for module in module_files() if "." not in module}
    assert top == TOP_LEVEL
    assert os.path.isfile(os.path.join(ROOT, PACKAGE, "__init__.py"))
    for name in os.listdir(ROOT):  # no second package
        assert name == PACKAGE or name in ("tests", "docs") or name.startswith(".") or \
            not os.path.isfile(os.path.join(ROOT, name, "__init__.py")), name


def test_no_module_imports_itself_back_directly_or_through_others():
    graph = project_imports()
    assert {"dcgan", "data", "machinery.training_step", "machinery.layers"} <= set(graph)

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


def test_commands_lend_nothing_and_the_package_face_is_empty():
    graph = project_imports()
    borrowers = {module: sorted(imported & COMMANDS) for module, imported in graph.items()
                 if imported & COMMANDS}
    assert borrowers == {}
    assert graph[f"{PACKAGE}.__init__"] == set()


def test_each_command_main_is_one_call_into_the_package():
    for command in COMMANDS:
        tree = parsed(module_files()[command])
        main = next(node for node in tree.body
                    if isinstance(node, ast.FunctionDef) and node.name == "main")
        assert len(main.body) == 1 and isinstance(main.body[0], ast.Return), command
        call = main.body[0].value
        assert isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute), command


def definition_sizes(tree):
    """(kind, name, lines) of every function and class, at any depth."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            yield kind, node.name, node.end_lineno - node.lineno + 1


def test_the_size_limits_hold():
    too_long = []
    for module, path in module_files().items():
        with open(path, encoding="utf-8") as handle:
            lines = len(handle.read().splitlines())
        limit = MAX_MODEL_LINES if module == "dcgan" else MAX_FILE_LINES
        if lines > limit:
            too_long.append((module, lines))
        for kind, name, size in definition_sizes(parsed(path)):
            if size > (MAX_CLASS_LINES if kind == "class" else MAX_FUNCTION_LINES):
                too_long.append((f"{module}.{name}", size))
    assert too_long == []


def test_a_passing_tests_files_are_deleted(pytestconfig):
    """pytest.ini: the slow tier writes 9-13 GB a session; pytest keeps 3 sessions by default."""
    assert pytestconfig.getini("tmp_path_retention_policy") == "failed"
    assert pytestconfig.inipath == pytestconfig.rootpath / "pytest.ini"
