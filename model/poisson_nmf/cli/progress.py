"""The command line's progress bar: one tqdm bar over the steps of a command."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

__all__ = ["StepBar", "step_bar"]


class StepBar:
    """A tqdm bar over the steps of a command, redrawn every second while a step runs."""

    def __init__(self, steps: Sequence[str]) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=len(steps),
            file=sys.stderr,
            disable=None,  # only on a terminal
            bar_format="{desc:<24} {bar:24} {n_fmt}/{total_fmt} [{elapsed}]{postfix}",
            leave=False,
        )
        self._started = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)
        if not self._bar.disable:
            self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self._bar.refresh()

    @property
    def shown(self) -> bool:
        """Whether the bar is drawn (stderr is a terminal)."""
        return not self._bar.disable

    def step(self, label: str) -> None:
        """Finish the current step and start the next."""
        if self._started:
            self._bar.update(1)
        self._started = True
        self._bar.set_postfix_str("", refresh=False)
        self._bar.set_description_str(label)

    def detail(self, label: str) -> None:
        """Show what the current step is doing."""
        self._bar.set_postfix_str(label)

    def close(self) -> None:
        """Finish the last step and remove the bar."""
        self._stop.set()
        if self._started:
            self._bar.update(1)
        self._bar.close()


@contextmanager
def step_bar(steps: Sequence[str]) -> Iterator[StepBar]:
    """Show a :class:`StepBar` over ``steps`` while the block runs; close it after."""
    p = StepBar(steps)
    try:
        yield p
    finally:
        p.close()
