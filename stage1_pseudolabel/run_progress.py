"""Rich progress bars of a Stage 1 run (scenes, queries, views/s, ETA)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RunProgress:
    """Rich progress for scenes and queries with views/s; silent when disabled."""

    def __init__(self, enabled: bool, scenes: int, queries: int, console: Console | None = None) -> None:
        self.enabled = enabled
        self.start = time.monotonic()
        self.views = 0
        self.progress: Progress | None = None
        if enabled:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console or Console(stderr=True),
                transient=False,
            )
            self.scenes = self.progress.add_task("scenes", total=scenes, rate="")
            self.queries = self.progress.add_task("queries", total=queries, rate="")

    def __enter__(self) -> RunProgress:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def scene_done(self, name: str) -> None:
        if self.progress is not None:
            self.progress.update(self.scenes, advance=1, description=f"scenes ({name})")

    def query_done(self, n: int = 1) -> None:
        if self.progress is not None:
            self.progress.advance(self.queries, n)

    def views_done(self, n: int) -> None:
        self.views += n
        if self.progress is not None:
            rate = self.views / max(time.monotonic() - self.start, 1e-6)
            self.progress.update(self.queries, rate=f"{rate:.1f} views/s")
