"""The `pixelcast` command: every command is listed, and asking for help loads no model stack."""

from __future__ import annotations

import subprocess
import sys

COMMANDS = ("serve", "bench", "eval", "train", "simulate", "report")


def _run(*code_lines: str) -> str:
    result = subprocess.run([sys.executable, "-c", "\n".join(code_lines)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_help_lists_every_command_without_loading_torch() -> None:
    out = _run(
        "import sys",
        "from streamer.cli import build_parser",
        "print(build_parser(['--help']).format_help())",
        "print('torch loaded:', 'torch' in sys.modules)",
    )
    for command in COMMANDS:
        assert command in out
    assert "torch loaded: False" in out


def test_a_command_gets_its_own_arguments() -> None:
    out = _run(
        "from streamer.cli import build_parser",
        "argv = ['bench', 'redis', '--json', 'x.json']",
        "args = build_parser(argv).parse_args(argv)",
        "print(args.writers, args.json, args.run.target)",
    )
    assert out.split() == ["64", "x.json", "benchmarks.redis_bench"]
