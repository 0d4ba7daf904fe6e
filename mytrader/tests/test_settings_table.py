"""The README's settings table names every environment variable the code reads,
no other, and gives the default settings.py really uses."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "mytrader" / "settings.py"
# Code that is not the application: its own variables (BENCH_*) are documented where it is run.
NOT_APPLICATION = {".venv", "var", "bench", "api_fuzz", "browser_tests", "tests", "migrations"}
ENV_METHODS = {"bool", "int", "float", "str", "list", "path", "db", "email_url", "json", "dict", "url"}


@dataclass(frozen=True, slots=True)
class EnvRead:
    name: str  # a variable, or "PREFIX_*" for a family read by a computed name
    default: ast.expr | None  # settings.py's default= expression; None elsewhere


def _settings_reads() -> list[EnvRead]:
    reads = []
    for node in ast.walk(ast.parse(SETTINGS.read_text())):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        first = node.args[0]
        if isinstance(first, ast.JoinedStr) and isinstance(first.values[0], ast.Constant):
            name = first.values[0].value + "*"  # a family read by a computed name: f"ENRICHMENT_{name}"
        elif isinstance(first, ast.Constant):
            name = first.value
        else:
            continue
        func = node.func
        is_env = (isinstance(func, ast.Name) and func.id == "env") or (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "env"
            and func.attr in ENV_METHODS
        )
        if is_env:
            default = next((kw.value for kw in node.keywords if kw.arg == "default"), None)
            reads.append(EnvRead(name, None if name.endswith("*") else default))
    return reads


def _is_os_environ(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def _environ_key(node: ast.AST) -> ast.expr | None:
    """The key of `os.environ.get(key)` / `os.environ[key]` (reads, not writes)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        if _is_os_environ(node.func.value) and node.args:
            return node.args[0]
    if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_os_environ(node.value):
        return node.slice
    return None


def _environ_reads() -> list[EnvRead]:
    reads = []
    for path in ROOT.rglob("*.py"):
        if NOT_APPLICATION & set(path.relative_to(ROOT).parts) or path.name in {"manage.py", "conftest.py"}:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            key = _environ_key(node)
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                reads.append(EnvRead(key.value, None))
            elif isinstance(key, ast.JoinedStr) and isinstance(key.values[0], ast.Constant):
                reads.append(EnvRead(key.values[0].value + "*", None))
    return reads


def _table() -> dict[str, str]:
    """variable -> its default cell, from the README's "Settings" table."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Settings") :]
    section = section[: section.index("\n## ", 1)]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            for name in re.findall(r"`([A-Z][A-Z0-9_]*\*?)`", cells[0]):
                rows[name] = cells[1]
    return rows


def _documented(name: str, table: dict[str, str]) -> str | None:
    """The table row documenting a variable (itself or a `PREFIX_*` family row)."""
    if name in table:
        return name
    return next((row for row in table if row.endswith("*") and name.startswith(row[:-1])), None)


def _shown(value: object) -> str:
    if value is True:
        return "on"
    if value is False:
        return "off"
    if value is None:
        return "none"
    if value == "":
        return "empty"
    return str(value)


def _path_parts(node: ast.expr) -> list[str]:
    """The folders of `BASE_DIR / "var" / "data"`, in order, relative to the checkout."""
    if isinstance(node, ast.BinOp):
        return _path_parts(node.left) + _path_parts(node.right)
    return [node.value] if isinstance(node, ast.Constant) else []


def _expected(default: ast.expr) -> list[str]:
    """What the README's default cell must say for a default= expression."""
    if isinstance(default, ast.Constant):
        return [_shown(default.value)]
    if isinstance(default, ast.List):
        return [",".join(str(item.value) for item in default.elts)]
    if isinstance(default, ast.IfExp) and ast.unparse(default.test) == "DEBUG":
        return ["DEBUG", *_expected(default.body), *_expected(default.orelse)]
    if isinstance(default, ast.UnaryOp) and ast.unparse(default) == "not DEBUG":
        return ["DEBUG", "on", "off"]
    if isinstance(default, ast.Call) and ast.unparse(default.func) == "str":  # str(BASE_DIR / "var" / ...)
        return ["/".join(_path_parts(default.args[0]))]
    if isinstance(default, ast.Name):
        return [default.id]
    raise AssertionError(f"teach this test how the README shows a default of {ast.unparse(default)}")


def test_the_table_names_every_variable_the_code_reads():
    table = _table()
    read = [item.name for item in _settings_reads() + _environ_reads()]
    missing = sorted({name for name in read if not _documented(name, table)})
    assert not missing, f"read by the code but not in the README's settings table: {missing}"


def test_the_table_names_no_variable_the_code_does_not_read():
    read = {item.name for item in _settings_reads() + _environ_reads()}
    stale = sorted(
        row
        for row in _table()
        if row not in read and not (row.endswith("*") and any(n.startswith(row[:-1]) for n in read))
    )
    assert not stale, f"in the README's settings table but read nowhere: {stale}"


def test_the_table_gives_the_defaults_settings_uses():
    table = _table()
    wrong = []
    for item in _settings_reads():
        row = _documented(item.name, table)
        if item.default is None or row is None or row.endswith("*"):
            continue
        cell = table[row]
        # An empty default reads as "empty" or, where it switches something off, "unset → ...".
        expected = ["unset" if text == "empty" and "unset" in cell else text for text in _expected(item.default)]
        absent = [text for text in expected if text not in cell]
        if absent:
            wrong.append(f"{item.name}: default {ast.unparse(item.default)} but the README says {cell!r}")
    assert not wrong, "\n".join(wrong)


def test_the_checks_see_what_settings_reads():
    # Guards the parsing above: if it stopped finding reads, the tests would pass on nothing.
    names = {item.name for item in _settings_reads()}
    assert {"DEBUG", "DATABASE_URL", "EMAIL_URL", "Q_SYNC", "AXES_COOLOFF_HOURS"} <= names
    assert "ENRICHMENT_*" in names
