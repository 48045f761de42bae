"""No private member is used across modules in the package (``ast``, no import runs).

A name with one leading underscore (``_count``, ``_apply_render_ahead``; dunders are not private) is
the business of the module that defines it. Another module may not reach it, whichever way:

- an attribute ``x._name`` read, written or called on anything but ``self``, ``cls`` or ``super()``,
  in a module that does not define ``_name`` itself (defining: a ``def``/``class`` of that name, an
  assignment to ``self._name``/``cls._name``, or a module- or class-level ``_name = ...``). Inside
  the defining module, ``other._name`` on another instance of its own class stays allowed;
- ``getattr``/``setattr``/``hasattr``/``delattr`` with a private name as a string;
- ``from module import _name``;
- a ``Protocol`` that declares a private member: a protocol is what *another* module asks of an
  object, so a private name in one is a reach across modules by definition (``FrameHost._count``
  and ``reconfigure.ServiceTarget._apply_*`` were two).

The rule knows names, not types: a module that defines ``_lock`` for itself could reach another
class's ``_lock`` unseen; that is the price of no type inference, and it is the rare case.
Private names of other libraries are outside the package's control: each one used is listed in
``FOREIGN`` with the reason, so a new one fails until it is justified there.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import flipedit_previewd

PACKAGE = Path(flipedit_previewd.__file__).parent
REFLECTION = ("getattr", "setattr", "hasattr", "delattr")

FOREIGN: dict[str, str] = {
    "_exit": "os._exit: the documented way for a worker process to end at once, without the parent's atexit handlers",
    "_getframe": "sys._getframe: documented (CPython); the journal takes its caller's code location, cheaper than "
    "inspect",
    "_args_from_interpreter_flags": "subprocess: the interpreter's -X/-W/-I flags for a worker started as a "
    "subprocess, "
    "as multiprocessing passes them to its own children",
    "_content": "requests.Response: a body read under the client's size and time bound is stored where .content reads "
    "it",
    "_content_consumed": "requests.Response: and marked read, so requests does not read the stream again",
}


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_receiver(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in ("self", "cls")
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def _is_protocol(node: ast.ClassDef) -> bool:
    for base in node.bases:
        target = base.value if isinstance(base, ast.Subscript) else base
        if (isinstance(target, ast.Name) and target.id == "Protocol") or (  # typing's, not asyncio.Protocol
            isinstance(target, ast.Attribute)
            and target.attr == "Protocol"
            and isinstance(target.value, ast.Name)
            and target.value.id in ("typing", "typing_extensions")
        ):
            return True
    return False


def defined_privates(tree: ast.Module) -> set[str]:
    """The private names a module defines for itself (see the module's docstring); nothing a Protocol declares."""
    protocols = {id(n) for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and _is_protocol(n)}
    inside_protocol: set[int] = set()
    for node in ast.walk(tree):
        if id(node) in protocols:
            inside_protocol.update(id(child) for child in ast.walk(node) if child is not node)
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in inside_protocol:
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _own_receiver(node.value):
            names.add(node.attr)
    return {name for name in names if private(name)}


def violations(source: str, module: str = "<module>") -> list[str]:
    """Every use of another module's private member in ``source`` (``module``: for the messages)."""
    tree = ast.parse(source)
    own = defined_privates(tree)
    found: list[str] = []

    def foreign(name: str) -> bool:
        return private(name) and name not in own and name not in FOREIGN

    for node in ast.walk(tree):
        where = f"{module}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute) and not _own_receiver(node.value) and foreign(node.attr):
            found.append(f"{where} uses {ast.unparse(node)}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in REFLECTION
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and not _own_receiver(node.args[0])
            and foreign(node.args[1].value)
        ):
            found.append(f"{where} uses {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom):
            found += [
                f"{where} imports {alias.name} from {node.module or '.'}" for alias in node.names if private(alias.name)
            ]
        elif isinstance(node, ast.ClassDef) and _is_protocol(node):
            for member in node.body:
                name = (
                    member.name
                    if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef))
                    else member.target.id
                    if isinstance(member, ast.AnnAssign) and isinstance(member.target, ast.Name)
                    else ""
                )
                if private(name):
                    found.append(f"{module}:{member.lineno} protocol {node.name} declares {name}")
    return found


def test_no_module_uses_a_private_member_of_another() -> None:
    found: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += violations(path.read_text(), str(path.relative_to(PACKAGE)))
    assert found == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # what there was: the routes counted through the service's private method, the supervisor published its events
        ("def route(s):\n    s._count('health')\n", "uses s._count"),
        ("def tick(s):\n    s._publish_source_events()\n", "uses s._publish_source_events"),
        # a protocol naming a private member, then used through it, is the same reach with a type on it
        (
            "from typing import Protocol\nclass Host(Protocol):\n    def _count(self, outcome: str) -> None: ...\n"
            "def get(host: Host):\n    host._count('cached')\n",
            "protocol Host declares _count",
        ),
        ("class Target(typing.Protocol):\n    _hidden: int\n", "protocol Target declares _hidden"),
        ("def f(x):\n    x._cache = {}\n", "uses x._cache"),  # writing counts
        ("def f(x):\n    return getattr(x, '_cache')\n", "uses getattr(x, '_cache')"),
        ("from flipedit_previewd.render.pool import _Child\n", "imports _Child from flipedit_previewd.render.pool"),
        ("def f(t):\n    return t.other._lock\n", "uses t.other._lock"),
    ],
)
def test_each_way_of_reaching_a_private_member_is_seen(source: str, expected: str) -> None:
    assert any(expected in problem for problem in violations(source)), violations(source)


@pytest.mark.parametrize(
    "source",
    [
        "class A:\n    def __init__(self):\n        self._n = 0\n    def same(self, other: 'A'):\n        return "
        "other._n == self._n\n",
        "class A:\n    def f(self):\n        return super()._g()\n",  # the class's own line of descent
        "def _helper():\n    pass\nclass B:\n    def f(self, m):\n        return m._helper\n",  # defined here
        "_STATE = {}\ndef f(x):\n    return x.__class__, x.__dict__\n",  # dunders are not private
        "import os\ndef child():\n    os._exit(0)\n",  # a foreign name listed in FOREIGN
        # asyncio's Protocol is a class to extend
        "import asyncio\nclass C(asyncio.Protocol):\n    def _pump(self):\n        pass\n",
    ],
)
def test_what_stays_allowed(source: str) -> None:
    assert violations(source) == []
