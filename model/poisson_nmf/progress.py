"""Progress of a posterior sampling run: iterations over all chains, as a bar or a line.

:func:`poisson_nmf.sample_posterior` runs one nutpie sampler per chain (two per chain
with the two-stage warm-up), each reporting through nutpie's ``progress_callback`` on
its own background thread. :class:`SamplingProgress` adds those reports up into one
count of iterations (tuning and draws, over all chains), with the divergences among the
kept draws, and shows it as a tqdm bar on stderr or hands it to a callable as a line of
text (the command line shows it in its own bar).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

ProgressArg = bool | None | Callable[[str], None]


def interactive() -> bool:
    """Whether stderr reaches a person: a terminal, or a Jupyter kernel's output stream."""
    err = sys.stderr
    if getattr(err, "isatty", lambda: False)():
        return True
    return type(err).__module__.startswith("ipykernel")


class SamplingProgress:
    """Iterations done over ``chains`` chains of ``per_chain`` iterations each.

    Parameters
    ----------
    progress : bool, None or callable
        ``None``: a tqdm bar on stderr when stderr is a terminal or a Jupyter
        kernel's stream (:func:`interactive`); ``True``: the bar always; ``False``:
        nothing; a callable: called with a one-line status (for example
        ``"sampling 2400/8000 iterations, 0 divergences"``) whenever it changes.
    chains, per_chain : int
        Number of chains and iterations per chain (tuning plus draws).
    """

    def __init__(self, progress: ProgressArg, chains: int, per_chain: int) -> None:
        if not (progress is None or isinstance(progress, bool) or callable(progress)):
            raise ValueError(f"progress must be a bool, None or a callable, got {progress!r}")
        self.total = int(chains) * int(per_chain)
        self._done = np.zeros(chains, dtype=np.int64)
        self._div = np.zeros(chains, dtype=np.int64)
        self._phase = "sampling"
        self._status = ""
        self._lock = threading.Lock()
        self._emit: Callable[[str], None] | None = None
        self._bar: Any = None
        self._last = ""
        if callable(progress) and not isinstance(progress, bool):
            self._emit = progress
        elif progress is not False:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total,
                desc="sampling",
                unit="it",
                file=sys.stderr,
                disable=progress is None and not interactive(),
                leave=False,
                dynamic_ncols=True,
            )

    @property
    def active(self) -> bool:
        """Whether anything is shown (callers skip the sampler's callbacks otherwise)."""
        return self._emit is not None or self.shows_bar

    @property
    def shows_bar(self) -> bool:
        """Whether a bar is shown (rather than a callable fed, or nothing)."""
        return self._bar is not None and not self._bar.disable

    @property
    def done(self) -> int:
        """Iterations done so far, over all chains."""
        return int(self._done.sum())

    @property
    def divergences(self) -> int:
        """Divergent transitions among the kept draws reported so far."""
        return int(self._div.sum())

    def line(self) -> str:
        """Return the current status as one line."""
        if self._phase != "sampling":
            return self._phase
        return (
            f"sampling {self.done}/{self.total} iterations, {self.divergences} "
            f"divergence{'' if self.divergences == 1 else 's'}"
        ) + (f"; {self._status}" if self._status else "")

    def update(self, chain: int, done: int, divergences: int | None = None) -> None:
        """Set chain ``chain``'s iterations done (and its kept draws' divergences)."""
        with self._lock:
            self._done[chain] = max(int(self._done[chain]), int(done))
            if divergences is not None:
                self._div[chain] = int(divergences)
            self._show()

    def nutpie_callback(self, chain: int, offset: int, tune: int) -> Callable[[Any], None]:
        """Return a ``progress_callback`` for a one-chain nutpie run of chain ``chain``.

        ``offset`` is the iterations the chain did in earlier runs; divergences are
        counted among draws after the run's ``tune`` tuning steps (from nutpie's
        ``divergent_draws``), and only for the run that keeps its draws (``tune >= 0``;
        a negative ``tune`` counts none).
        """

        def callback(chains_progress: Any) -> None:
            p = chains_progress[0]
            div = None
            if tune >= 0:
                div = sum(1 for d in p.divergent_draws if d >= tune)
            self.update(chain, offset + int(p.finished_draws), div)

        return callback

    def status(self, text: str) -> None:
        """Show ``text`` beside the count (the stopping rule's slowest entry, for example)."""
        with self._lock:
            self._status = text
            self._show()

    def phase(self, label: str) -> None:
        """Show the step under way; ``"sampling"`` shows the iterations again."""
        with self._lock:
            self._phase = label
            if self._bar is not None:
                self._bar.set_description_str(label, refresh=True)
            self._show()

    def _show(self) -> None:
        if self._bar is not None:
            self._bar.n = self.done
            post = f"{self.divergences} div" + (f", {self._status}" if self._status else "")
            self._bar.set_postfix_str(post, refresh=False)
            self._bar.refresh()
        elif self._emit is not None:
            text = self.line()
            if text != self._last:
                self._last = text
                self._emit(text)

    def close(self) -> None:
        """Remove the bar (it is not left behind on the terminal)."""
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> SamplingProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
