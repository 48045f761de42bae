"""The layering rule of ARCHITECTURE.md, enforced over the package's imports (``ast``, no import runs).

Every module has a layer (``LAYERS``); an import may only go along an allowed edge (``ALLOWED``).
Above the direct edges, one rule is checked through the whole import graph at run time (imports
under ``if TYPE_CHECKING:`` do not run): no module of the HTTP side reaches one of the render
side, however indirectly; previewctl reaches nothing of the daemon but what ``SHARED`` lists.
A new module must be given a layer here, or the first test fails.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import flipedit_previewd

PACKAGE = Path(flipedit_previewd.__file__).parent

LAYERS: dict[str, str] = {
    # shared leaves: no knowledge of HTTP or rendering
    "__init__": "base", "errors": "base", "config": "base", "docs": "base", "journal": "base", "textsafe": "base",
    "metrics": "base", "resources": "base", "gcrypt": "base", "percentiles": "base", "looplag": "base",
    "offload": "base", "rejections": "base", "configvalues": "base", "readonlydb": "base",
    # listening and HTTP: sockets in, sans-IO protocol, one connection, lifecycle, access control
    "sockets": "http", "fdstore": "http", "protocol": "http", "access": "http", "connection": "http",
    "server": "http", "lifecycle": "http", "reconfigure": "http", "intake": "http",
    # supervision: tick, hang policy, watchdog, status, /health; reads both sides
    "supervisor": "supervision", "health": "supervision",
    # the application: composition root, routes, the frame use-case, the dispatcher
    "service": "app", "routes": "app", "roots": "app", "frames": "app", "dispatch": "app", "viewer": "app",
    # the render side: admission, workers, compositing and encoding, media, timelines and their sources
    "admission": "render", "workers": "render", "compositor": "render", "media": "render", "output": "render",
    "framecache": "render", "timeline": "render", "projectdb": "render", "projects": "render",
    "renderahead": "render", "safety": "render", "limits": "render", "sniff": "render", "display": "render", "keyframes": "render",
    "confine": "render", "wire": "render",
    # the daemon's entry point, fixture/demo writers, the HTTP client, previewctl
    "__main__": "entry", "demo": "tools", "testing": "tools", "client": "client", "transport": "client", "ctl": "ctl",
}

ALLOWED: dict[str, set[str]] = {
    "base": {"base"},
    "http": {"http", "base"},
    "render": {"render", "base"},
    "supervision": {"supervision", "http", "render", "app", "base"},
    "app": {"app", "supervision", "http", "render", "base", "tools"},
    "entry": {"entry", "app", "http", "base"},
    "tools": {"tools", "render", "base"},
    "client": {"client", "base"},
    "ctl": {"ctl", "client", "base"},
}

# Modules of another layer a layer may use anyway, each with its reason.
SHARED: dict[tuple[str, str], str] = {
    ("entry", "workers"): "__main__ starts the worker processes before it imports the rest of the daemon: their "
                          "start-up overlaps the daemon's (cold start, bench/footprint.py)",
    ("http", "supervisor"): "the server starts the watchdog thread (supervisor.py runs nothing of the render side: "
                            "NEVER_REACHES checks it)",
    ("client", "access"): "the token file's location and reader, shared with the daemon that writes it",
    ("ctl", "access"): "the token file's location and reader, shared with the daemon that writes it",
}

# Through the run-time import graph, these layers must never be reached from these.
NEVER_REACHES: dict[str, set[str]] = {
    "http": {"render", "app", "tools"},
    "ctl": {"render", "app", "supervision", "entry", "tools"},
}


def layer_of(module: str) -> str:
    return LAYERS[module.split(".")[0]]


def package_modules() -> dict[str, str]:
    """module name (``server``, ``ctl.commands``, ``ctl``) -> its source."""
    found: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if len(parts) > 1 and parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path.read_text()
    return found


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(module: str, source: str, known: set[str]) -> list[tuple[str, bool]]:
    """(imported package module, at run time?) for every import in ``source``, anywhere in it."""
    is_package = module == "ctl" or module == "__init__"
    package = module.split(".") if is_package and module != "__init__" else module.split(".")[:-1]
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
            if to not in ALLOWED[frm] and (frm, target.split(".")[0]) not in SHARED:
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
                        problems.append(f"{module} ({layer_of(module)}) reaches {target} ({layer_of(target)}) at run time: "
                                        + " -> ".join(reversed(path)))
    return problems


def test_every_module_has_a_layer() -> None:
    missing = sorted(m for m in package_modules() if m.split(".")[0] not in LAYERS)
    assert not missing, f"give these modules a layer in LAYERS (and a line in ARCHITECTURE.md): {missing}"


def test_the_package_follows_the_layering_rule() -> None:
    assert violations(package_modules()) == []


def test_the_import_reader_sees_every_form_of_import() -> None:
    known = {"__init__", "server", "workers", "journal", "ctl", "ctl.http", "ctl.words"}
    source = ("from . import __version__\nfrom .workers import WorkerPool\nimport flipedit_previewd.journal\n"
              "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .journal import EventLog\n"
              "def later():\n    from flipedit_previewd.workers import Worker\n")
    assert imports_of("server", source, known) == [("__init__", True), ("workers", True), ("journal", True),
                                                   ("journal", False), ("workers", True)]
    assert imports_of("ctl.words", "from ..journal import X\nfrom .http import Y\n", known) == [("journal", True), ("ctl.http", True)]
    assert imports_of("ctl", "from . import words\n", known) == [("ctl.words", True)]


@pytest.mark.parametrize(("module", "source", "expected"), [
    ("connection", "from .workers import WorkerPool\n", "connection (http) imports workers (render)"),
    ("server", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .service import Service\n",
     "server (http) imports service (app)"),  # a typing-only import breaks the direct rule too
    ("protocol", "def late():\n    from .compositor import compose\n", "protocol (http) imports compositor (render)"),
    ("ctl.words", "from ..service import Service\n", "ctl.words (ctl) imports service (app)"),
    ("admission", "from .server import Server\n", "admission (render) imports server (http)"),
    # each import along an allowed edge, but the HTTP side now reaches the render side through supervision
    ("supervisor", "from .workers import WorkerPool\n", "server (http) reaches workers (render) at run time"),
])
def test_a_violating_import_fails_the_rule(module: str, source: str, expected: str) -> None:
    modules = package_modules()
    modules[module] = modules[module] + "\n" + source
    found = violations(modules)
    assert any(expected in problem for problem in found), found


def service_api() -> set[str]:
    tree = ast.parse((PACKAGE / "lifecycle.py").read_text())
    api = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ServiceAPI")
    return {n.name for n in api.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def reaches_around(source: str, api: set[str]) -> list[str]:
    """Uses of ``<x>.service.<name>`` where <name> is not part of ServiceAPI (reading or writing)."""
    return sorted({node.attr for node in ast.walk(ast.parse(source))
                   if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                   and node.value.attr == "service" and node.attr not in api})


def test_the_http_side_uses_the_service_only_through_its_interface() -> None:
    api = service_api()
    assert {"handle", "refuse", "tick", "drain", "reload"} <= api
    modules = package_modules()
    found = {m: reaches_around(src, api) for m, src in modules.items() if layer_of(m) == "http"}
    assert {m: names for m, names in found.items() if names} == {}
    # what it caught before the interface: the server reached into admission and wrote the connection count
    assert reaches_around("self.service.admission.reject('x')\nself.service.connections = 3\n", api) == ["admission", "connections"]
