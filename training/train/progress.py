"""Progress bars on stderr (rich): one over the epochs, one per epoch over its images."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Any]:
    """A rich progress display (stderr) with loss and throughput; ``None`` when disabled."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from model.cliutil import err_console

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    ) as bar:
        yield bar


class EpochBars:
    """The bars of a training run; every method does nothing when the display is off (``bar=None``)."""

    def __init__(self, bar: Any, epochs: int, done: int) -> None:
        self.bar = bar
        self.epochs = epochs
        self.overall = (
            None if bar is None else bar.add_task("training", total=epochs, completed=done, info="")
        )
        self.task = None

    def start_epoch(self, epoch: int, images: int) -> None:
        """Open the bar of ``epoch`` (0-based) over ``images`` training images."""
        if self.bar is not None:
            self.task = self.bar.add_task(f"epoch {epoch + 1}/{self.epochs}", total=images, info="")

    def advance(self, images: int, loss: float, images_per_s: float) -> None:
        """After a batch: the images it held, its loss and the epoch's throughput so far."""
        if self.bar is not None:
            self.bar.update(self.task, advance=images, info=f"loss {loss:.3f} {images_per_s:.0f} img/s")

    def end_epoch(self, info: str) -> None:
        """Hide the epoch's bar and advance the overall one, showing ``info``."""
        if self.bar is not None:
            self.bar.update(self.task, visible=False)
            self.bar.update(self.overall, advance=1, info=info)


@contextmanager
def epoch_bars(enabled: bool, epochs: int, done: int) -> Iterator[EpochBars]:
    """:class:`EpochBars` for a run of ``epochs`` of which ``done`` are finished."""
    with progress_bar(enabled) as bar:
        yield EpochBars(bar, epochs, done)
