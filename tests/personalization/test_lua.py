"""The Lua script files: each script says what it takes, and `source` puts it together as Redis runs it."""

from __future__ import annotations

import pytest

from personalization import profiles
from personalization.lua import FOLDER, source

FRAGMENTS = {"fmt.lua", "increments.lua", "evidence.lua", "refresh_ttl.lua"}  # functions other scripts use


def test_every_script_names_its_keys_and_arguments_in_its_header() -> None:
    scripts = sorted(path for path in FOLDER.glob("*.lua") if path.name not in FRAGMENTS)
    assert len(scripts) >= 8
    for path in scripts:
        header = [line for line in path.read_text().splitlines() if line.startswith("--")]
        assert any("KEYS" in line for line in header) and any("ARGV" in line for line in header), path.name


def test_a_used_file_comes_once_before_the_script_and_constants_are_filled_in() -> None:
    text = source("append.lua", profiles.LUA_CONSTANTS)
    assert text.count("local function fmt(") == 1  # append uses it through evidence.lua and on its own paths
    assert text.index("local function add_evidence(") < text.index("local function append_viewer(")
    assert f"local SCHEMA_VERSION = {profiles.SCHEMA_VERSION}" in text
    assert "{{" not in text.replace("{{'", "")


def test_a_missing_constant_is_named() -> None:
    with pytest.raises(KeyError, match="TTL_FIELD"):
        source("save_assignments.lua", {})
