"""The Lua scripts Pixelcast runs inside Redis, one `.lua` file each.

Each file starts with a header of `--` lines that says what KEYS and ARGV it takes and what it returns.
A script that calls shared functions names their files in `-- uses:` lines; their text goes in front of
it. Numbers and field names that Python code also uses stay defined once, in Python: a file writes
them as `{{NAME}}`, and `source` fills them in from the values its caller passes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path

FOLDER = Path(__file__).parent
_USES = re.compile(r"^-- uses: (.+)$", re.M)
_PLACEHOLDER = re.compile(r"\{\{([A-Z_][A-Z0-9_]*)\}\}")

LuaValue = int | float | str


@functools.cache
def _text(name: str) -> str:
    return (FOLDER / name).read_text(encoding="utf-8")


def _with_uses(name: str, seen: set[str]) -> list[str]:
    """`name`'s text after the text of every file it uses (each once, in the order first used)."""
    if name in seen:
        return []
    seen.add(name)
    text = _text(name)
    parts: list[str] = []
    for match in _USES.finditer(text):
        for used in (u.strip() for u in match.group(1).split(",")):
            parts += _with_uses(used, seen)
    return [*parts, text]


def lua_literal(value: LuaValue) -> str:
    """How a Python value is written in the scripts: numbers exactly (`repr` of a float), strings as they are."""
    return repr(value) if isinstance(value, float) else str(value)


def source(name: str, constants: Mapping[str, LuaValue]) -> str:
    """The full text of the script `name` (with the files it uses), `{{NAME}}` filled in from `constants`.

    Raises `KeyError` naming a placeholder `constants` lacks.
    """
    text = "\n".join(_with_uses(name, set()))

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in constants:
            raise KeyError(f"{name} needs the constant {key}")
        return lua_literal(constants[key])

    return _PLACEHOLDER.sub(fill, text)
