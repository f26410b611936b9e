"""The import boundary: services talk through contracts, never through each other's code.

The gateway depends on the RPC contracts (contracts.api, contracts.payment), not on a service's package, so an
internal edit in a service cannot silently change the public HTTP API; a service never imports another service's
package (they share only kit/ and contracts/); contracts/ and kit/ import no service at all. Imports are read with
ast over the tree (relative imports stay inside their own package and are allowed)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"
PACKAGES = {pkg.name: pkg for service_dir in SERVICES.iterdir() if service_dir.is_dir()
            for pkg in service_dir.iterdir() if (pkg / "__init__.py").is_file()}


def imported_modules(path):
    """Every absolute module a file imports, anywhere in it (also inside functions), with its line."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno


def foreign_imports(files, allowed):
    """`file:line imports module` for each import of a service package other than those in `allowed`."""
    return [f"{path}:{line} imports {module}"
            for path in files for module, line in imported_modules(path)
            if module.split(".")[0] in PACKAGES and module.split(".")[0] not in allowed]


def python_files(folder):
    return sorted(folder.rglob("*.py"))


def test_the_tree_has_the_five_service_packages():
    """Guards the tests below: they would pass vacuously if the packages were not found."""
    assert set(PACKAGES) == {"catalog", "orders", "social_feed", "commission", "gateway"}
    assert all(python_files(pkg) for pkg in PACKAGES.values())


def test_the_gateway_imports_no_service_package():
    assert foreign_imports(python_files(PACKAGES["gateway"]), allowed={"gateway"}) == []


@pytest.mark.parametrize("name", sorted(set(PACKAGES) - {"gateway"}))
def test_a_service_imports_no_other_service_package(name):
    assert foreign_imports(python_files(PACKAGES[name]), allowed={name}) == []


@pytest.mark.parametrize("shared", ["contracts", "kit"])
def test_the_shared_packages_import_no_service(shared):
    assert foreign_imports(python_files(ROOT / shared), allowed=set()) == []


def test_the_check_catches_a_leak(tmp_path):
    """Guards the tests above: a gateway module importing a service's schemas, directly or from inside a
    function, is reported; a relative import and the contracts are not."""
    leaky = tmp_path / "leaky.py"
    leaky.write_text("from contracts.api.orders import OrderInput\nfrom . import schemas\n"
                     "def f():\n    import orders.schemas\n    from catalog.schemas import ReviewInput\n")
    assert foreign_imports([leaky], allowed={"gateway"}) == [f"{leaky}:4 imports orders.schemas",
                                                             f"{leaky}:5 imports catalog.schemas"]
