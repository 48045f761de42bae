"""The layering rule of ARCHITECTURE.md, enforced over the package's imports (``ast``, no import runs).

Every module has a layer (``LAYERS``); an import may only go along an allowed edge (``ALLOWED``).
Above the direct edges, one rule is checked through the whole import graph at run time (imports
under ``if TYPE_CHECKING:`` do not run): no module of the HTTP side reaches one of the render
side, however indirectly; previewctl reaches nothing of the daemon but what ``SHARED`` lists.
And no module imports itself through others, not even for typing: a cycle hidden behind
``TYPE_CHECKING`` is still two modules that cannot be read, tested or changed apart.
A new module must be given a layer here, or the first test fails.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import flipedit_previewd

PACKAGE = Path(flipedit_previewd.__file__).parent

# Each package of the tree, and the packages it may import. The tree draws the request's path:
# http (bytes in, answers out) -> app (routes, the frame use case) -> render (admission, the pool)
# -> worker (compositing and decoding, in child processes); timeline is what is shown, sd is systemd,
# common and config are leaves everyone may use.
ALLOWED: dict[str, set[str]] = {
    "__init__": {"common"},
    "common": {"common", "__init__"},
    "config": {"config", "common"},
    "timeline": {"timeline", "common", "config"},
    "worker": {"worker", "timeline", "common", "config"},
    "render": {"render", "worker", "proxy", "timeline", "common", "config"},
    "sd": {"sd", "common", "config"},
    "http": {"http", "sd", "common", "config", "__init__"},
    "proxy": {"proxy", "worker", "timeline", "common", "config"},
    "app": {"app", "http", "sd", "render", "worker", "proxy", "timeline", "common", "config", "demo", "__init__"},
    "__main__": {"__main__", "app", "http", "sd", "common", "config", "__init__"},
    "demo": {"demo", "worker", "timeline", "common", "config"},
    "client": {"client", "common", "__init__"},
    "ctl": {"ctl", "client", "common", "config", "__init__"},
}
LAYERS = {name: name for name in ALLOWED}

# Modules of another package a package may use anyway, each with its reason.
SHARED: dict[tuple[str, str], str] = {
    ("__main__", "render.pool"): "__main__ starts the worker processes before it imports the rest of the daemon: their "
    "start-up overlaps the daemon's (cold start, bench/footprint.py)",
    (
        "worker",
        "proxy.reader",
    ): "a worker decodes a frame from a proxy instead of the original (the reader imports only proxy.store)",
    ("worker", "proxy.store"): "the proxy's manifest and key, read by a worker (the store imports only worker.display)",
}

# Through the run-time import graph, these packages must never be reached from these.
NEVER_REACHES: dict[str, set[str]] = {
    "http": {"render", "worker", "proxy", "timeline", "app", "demo"},
    "ctl": {"render", "worker", "proxy", "timeline", "app", "http", "sd", "demo", "__main__"},
    "client": {"render", "worker", "proxy", "timeline", "app", "http", "sd", "demo", "__main__"},
}


def layer_of(module: str) -> str:
    return LAYERS[module.split(".")[0]]


def is_package(module: str) -> bool:
    return (PACKAGE / module.replace(".", "/") / "__init__.py").exists() or module == "__init__"


def package_modules() -> dict[str, str]:
    """module name (``server``, ``ctl.core``, ``ctl``) -> its source."""
    found: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if len(parts) > 1 and parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path.read_text()
    return found


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, source: str, known: set[str]) -> list[tuple[str, bool]]:
    """(imported package module, at run time?) for every import in ``source``, anywhere in it."""
    package = [] if module == "__init__" else module.split(".") if is_package(module) else module.split(".")[:-1]
    found: list[tuple[str, bool]] = []

    def resolve(name: str) -> str | None:
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            candidate = ".".join(parts[:end])
            if candidate in known:
                return candidate
        return "__init__" if name == "" else None

    def visit(node: ast.AST, runtime: bool) -> None:
        if isinstance(node, ast.If) and _type_checking(node.test):
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, runtime)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "flipedit_previewd":
                    target = resolve(alias.name.partition(".")[2])
                    if target:
                        found.append((target, runtime))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                stem = ".".join([*base, node.module] if node.module else base)
            elif node.module and node.module.split(".")[0] == "flipedit_previewd":
                stem = node.module.partition(".")[2]
            else:
                stem = None
            if stem is not None:
                for alias in node.names:  # ``from . import commands`` names a module; ``from . import x`` a name
                    sub = f"{stem}.{alias.name}" if stem else alias.name
                    target = sub if sub in known else resolve(stem)
                    if target:
                        found.append((target, runtime))
        for child in ast.iter_child_nodes(node):
            visit(child, runtime)

    visit(ast.parse(source), True)
    return found


def violations(modules: dict[str, str]) -> list[str]:
    """Every import along an edge the table does not allow, and every forbidden run-time reach."""
    known = set(modules)
    problems: list[str] = []
    graph: dict[str, set[str]] = {}
    for module, source in modules.items():
        graph[module] = set()
        for target, runtime in imports_of(module, source, known):
            if target == module:
                continue
            if runtime:
                graph[module].add(target)
            frm, to = layer_of(module), layer_of(target)
            if to not in ALLOWED[frm] and (frm, target) not in SHARED:
                problems.append(f"{module} ({frm}) imports {target} ({to})")
    for module in graph:
        banned = NEVER_REACHES.get(layer_of(module), set())
        seen, todo, via = {module}, [module], {module: module}
        while todo:
            current = todo.pop()
            for target in graph[current]:
                if target not in seen:
                    seen.add(target)
                    via[target] = current
                    todo.append(target)
                    if layer_of(target) in banned:
                        path = [target]
                        while path[-1] != module:
                            path.append(via[path[-1]])
                        problems.append(
                            f"{module} ({layer_of(module)}) reaches {target} ({layer_of(target)}) at run time: "
                            + " -> ".join(reversed(path))
                        )
    return problems


def import_cycles(modules: dict[str, str]) -> list[list[str]]:
    """Each set of modules that import one another, typing-only imports counted (Tarjan's strongly connected
    components with more than one module), sorted."""
    known = set(modules)
    graph = {
        module: sorted({target for target, _ in imports_of(module, source, known) if target != module})
        for module, source in modules.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = [stack.pop()]
            while component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(cycles)


def test_every_module_has_a_layer() -> None:
    missing = sorted(m for m in package_modules() if m.split(".")[0] not in LAYERS)
    assert not missing, f"give these modules a layer in LAYERS (and a line in ARCHITECTURE.md): {missing}"


def test_the_package_follows_the_layering_rule() -> None:
    assert violations(package_modules()) == []


def test_no_import_cycle_even_counting_typing_imports() -> None:
    assert import_cycles(package_modules()) == []


@pytest.mark.parametrize(
    ("module", "source", "cycle"),
    [
        # the cycles there were: the connection typed its server, the parts typed the service that composed them
        (
            "http.connection",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from flipedit_previewd.http.server import "
            "Server\n",
            ["http.connection", "http.server"],
        ),
        (
            "app.health",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from flipedit_previewd.app.service import "
            "Service\n",
            ["app.health", "app.service"],
        ),
        (
            "ctl.cmd_completion",
            "def later():\n    from .parser import build_parser\n",
            ["ctl.cmd_completion", "ctl.parser"],
        ),  # deferred
    ],
)
def test_a_cycle_fails_however_it_is_hidden(module: str, source: str, cycle: list[str]) -> None:
    modules = package_modules()
    modules[module] += "\n" + source
    assert cycle in import_cycles(modules)


def test_the_import_reader_sees_every_form_of_import() -> None:
    known = {"__init__", "http.server", "render.pool", "common.journal", "ctl", "ctl.http", "ctl.words"}
    source = (
        "from .. import __version__\nfrom ..render.pool import WorkerPool\nimport flipedit_previewd.common.journal\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..common.journal import EventLog\n"
        "def later():\n    from flipedit_previewd.render.pool import Worker\n"
    )
    assert imports_of("http.server", source, known) == [
        ("__init__", True),
        ("render.pool", True),
        ("common.journal", True),
        ("common.journal", False),
        ("render.pool", True),
    ]
    assert imports_of("ctl.words", "from ..common.journal import X\nfrom .http import Y\n", known) == [
        ("common.journal", True),
        ("ctl.http", True),
    ]
    assert imports_of("ctl", "from . import words\n", known) == [("ctl.words", True)]


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (
            "http.connection",
            "from flipedit_previewd.render.pool import WorkerPool\n",
            "http.connection (http) imports render.pool (render)",
        ),
        (
            "http.server",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..app.service import Service\n",
            "http.server (http) imports app.service (app)",
        ),  # a typing-only import breaks the direct rule too
        (
            "http.protocol",
            "def late():\n    from flipedit_previewd.worker.compositor import compose\n",
            "http.protocol (http) imports worker.compositor (worker)",
        ),
        ("ctl.words", "from ..app.service import Service\n", "ctl.words (ctl) imports app.service (app)"),
        (
            "render.admission",
            "from flipedit_previewd.http.server import Server\n",
            "render.admission (render) imports http.server (http)",
        ),
        (
            "client.api",
            "from flipedit_previewd.http.access import Guard\n",
            "client.api (client) imports http.access (http)",
        ),
    ],
)
def test_a_violating_import_fails_the_rule(module: str, source: str, expected: str) -> None:
    modules = package_modules()
    modules[module] = modules[module] + "\n" + source
    found = violations(modules)
    assert any(expected in problem for problem in found), found


def test_an_indirect_reach_fails_even_along_allowed_edges(monkeypatch: pytest.MonkeyPatch) -> None:
    # were sd allowed to use the render side, the HTTP side would reach it through the watchdog
    monkeypatch.setitem(ALLOWED, "sd", ALLOWED["sd"] | {"render"})
    modules = package_modules()
    modules["sd.watchdog"] += "\nfrom flipedit_previewd.render.pool import WorkerPool\n"
    found = violations(modules)
    assert any("http.server (http) reaches render.pool (render) at run time" in problem for problem in found), found


def service_api() -> set[str]:
    tree = ast.parse((PACKAGE / "http" / "lifecycle.py").read_text())
    api = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ServiceAPI")
    return {n.name for n in api.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def reaches_around(source: str, api: set[str]) -> list[str]:
    """Uses of ``<x>.service.<name>`` where <name> is not part of ServiceAPI (reading or writing)."""
    return sorted(
        {
            node.attr
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "service"
            and node.attr not in api
        }
    )


def test_the_http_side_uses_the_service_only_through_its_interface() -> None:
    api = service_api()
    assert {"handle", "refuse", "tick", "drain", "reload"} <= api
    modules = package_modules()
    found = {m: reaches_around(src, api) for m, src in modules.items() if layer_of(m) == "http"}
    assert {m: names for m, names in found.items() if names} == {}
    # what it caught before the interface: the server reached into admission and wrote the connection count
    assert reaches_around("self.service.admission.reject('x')\nself.service.connections = 3\n", api) == [
        "admission",
        "connections",
    ]
