"""What a measurement was made on, and writing its report: shared by `pixelcast eval` and the benchmarks."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any


def machine(*, with_torch: bool = True) -> dict[str, Any]:
    """What the numbers were measured on; `with_torch=False` for reports that must not load torch."""
    facts: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
    }
    if with_torch:
        import torch

        facts["torch"] = torch.__version__
        facts["torch_threads"] = torch.get_num_threads()
        facts["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return facts


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo; `platform.processor()` there says only "x86_64"), else
    what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies inside it: reports and model cards are
    committed, and must not carry one machine's directories."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def write_json(report: dict[str, Any], path: Path) -> None:
    """Write the report (creating its folder) and say where it went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
