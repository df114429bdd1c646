"""ARCHITECTURE.md convention 1: the protocol and media cores are sans-IO.

sip/ and media/ must not import asyncio, socket, time, threading, selectors or ssl, nor read a wall clock:
every entry point takes `now`, randomness is injected. This walks every module's syntax tree (imports
inside functions and `if TYPE_CHECKING:` blocks count too) and fails naming file, line and module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "ifescalate"
CORES = ("sip", "media")
FORBIDDEN = frozenset({"asyncio", "socket", "time", "threading", "selectors", "ssl"})
# Reading the clock through datetime is the same violation as importing time.
CLOCK_CALLS = frozenset({"now", "utcnow", "today"})
CLOCK_OWNERS = frozenset({"datetime", "date"})


def violations(source: str, filename: str = "<source>") -> list[str]:
    """Every forbidden import or clock read in `source`, as "file:line: what"."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        line = getattr(node, "lineno", 0)
        for module in _imported(node):
            if module.split(".")[0] in FORBIDDEN:
                found.append(f"{filename}:{line}: imports {module}")
        if _is_clock_call(node):
            found.append(f"{filename}:{line}: reads the clock ({ast.unparse(node)})")
    return found


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module]
    # __import__("time") / importlib.import_module("socket") with a literal name.
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if name in ("__import__", "import_module") and isinstance(node.args[0].value, str):
            return [node.args[0].value]
    return []


def _is_clock_call(node: ast.AST) -> bool:
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return False
    owner = node.func.value
    owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
    return node.func.attr in CLOCK_CALLS and owner_name in CLOCK_OWNERS


def core_modules() -> list[Path]:
    return sorted(
        path
        for core in CORES
        if (PACKAGE / core).is_dir()
        for path in (PACKAGE / core).rglob("*.py")
    )


def test_the_sip_core_exists_so_this_check_is_not_vacuous() -> None:
    assert (PACKAGE / "sip" / "__init__.py").is_file()
    assert len(core_modules()) >= 2


@pytest.mark.parametrize("path", core_modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_core_module_is_sans_io(path: Path) -> None:
    assert violations(path.read_text(), str(path.relative_to(PACKAGE.parent))) == []


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("import time", "imports time"),
        ("import asyncio.events", "imports asyncio.events"),
        ("from socket import socket", "imports socket"),
        ("import os, threading", "imports threading"),
        ("def f():\n    import selectors", "imports selectors"),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ssl", "imports ssl"),
        ("m = __import__('time')", "imports time"),
        ("import importlib\nm = importlib.import_module('socket')", "imports socket"),
        ("import datetime\nx = datetime.datetime.now()", "reads the clock"),
        ("from datetime import date\nx = date.today()", "reads the clock"),
    ],
)
def test_checker_catches(source: str, what: str) -> None:
    found = violations(source)
    assert len(found) == 1 and what in found[0], found


@pytest.mark.parametrize(
    "source",
    [
        "from . import time",  # a sibling module of ours that happens to be called time
        "from .timers import Timer",
        "import timeit_like_name",
        "import re, os, hmac, hashlib",
        "x = obj.now",  # attribute read, not a clock call
        "def f(now: float) -> float:\n    return now + 0.5",
    ],
)
def test_checker_allows(source: str) -> None:
    assert violations(source) == []
