"""Read a Rerun ``.rrd`` recording back with rerun's own reader (for the viewer tests)."""

from __future__ import annotations

from pathlib import Path


def read_rrd(path: Path) -> dict[str, dict[str, object]]:
    """{entity path: {component column: first row's value}} of every chunk in the recording."""
    from rerun.chunk import RrdReader

    out: dict[str, dict[str, object]] = {}
    for chunk in RrdReader(path).stream():
        batch = chunk.to_record_batch()
        for name in batch.schema.names:
            if ":" in name:
                value = batch.column(name)[0].as_py()
                if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
                    value = value[0]  # text components come back as one-element lists
                out.setdefault(chunk.entity_path, {})[name] = value
    return out
