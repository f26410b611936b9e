"""Tools do not import tests: the tests import the tools' clients and flows (tools/client.py, tools/flows.py,
tools/bus.py), never the reverse, so `make bench` and `make chaos` run from a tree without tests/."""
import ast

from tools.stack import REPO, SERVICES


def imported_modules(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_no_tool_imports_a_test_module():
    offenders = [f"{path.relative_to(REPO)} imports {module}" for path in sorted((REPO / "tools").rglob("*.py"))
                 for module in imported_modules(path) if module == "tests" or module.startswith("tests.")]
    assert offenders == []


def test_every_service_is_named_module_and_class():
    for spec in SERVICES:
        module, _, cls = spec.target.partition(":")
        assert spec.file.exists(), spec.name
        assert cls in {n.name for n in ast.parse(spec.file.read_text()).body if isinstance(n, ast.ClassDef)}
