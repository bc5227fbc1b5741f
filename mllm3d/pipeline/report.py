"""Writing results into a Markdown file: the machine, and one owned section between markers."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path


def cpu_model() -> str:
    """The CPU model name (from /proc/cpuinfo on Linux, else platform.processor())."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine_summary() -> str:
    """One line: CPU model, cores, OS, Python and torch versions."""
    try:
        import torch

        torch_v = f", torch {torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError:
        torch_v = ""
    return (
        f"{cpu_model()}, {usable_cores()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}{torch_v}"
    )


def section_markers(name: str) -> tuple[str, str]:
    return f"<!-- BEGIN {name} (generated; edits inside are overwritten) -->", f"<!-- END {name} -->"


def update_section(path: str | Path, name: str, body: str, title: str = "# Results") -> Path:
    """Replace the section ``name`` of a Markdown file (between its markers), keeping everything else.

    The section is appended when the file has none; the file is created with ``title`` when missing.
    """
    p = Path(path)
    begin, end = section_markers(name)
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = p.read_text(encoding="utf-8") if p.is_file() else f"{title}\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        if len(pattern.findall(text)) > 1:
            raise ValueError(f"{p}: section {name!r} appears more than once; fix the file by hand")
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    os.replace(tmp, p)
    return p
