"""Independent pieces of work on any executor: serial, ``concurrent.futures`` or Dask.

Jobs made of independent pieces (the K grid and folds of rank selection, restarts, SBC
simulations, loadings of many samples) go through :func:`map_pieces`. It takes any
:class:`concurrent.futures.Executor` (threads or processes) or a
``dask.distributed.Client`` (used through ``client.get_executor()``: a real Dask cluster
is how a user outgrows one machine, so there is no scheduler of our own here).

Reproducibility: the caller derives every piece's seed before anything is submitted
(``np.random.default_rng(seed).spawn(n)`` or ``SeedSequence.spawn``), so a piece's result
does not depend on which worker ran it or in what order the pieces finished, and
:func:`map_pieces` returns the results in the order of the pieces. The serial run and any
executor therefore give equal results for the same seed.

Oversubscription: every piece runs under :func:`threadpoolctl.threadpool_limits` and
Numba's ``set_num_threads`` at ``threads_per_piece`` (default 1), so two workers on two
cores do not each start a BLAS or Numba pool the size of the machine.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, as_completed
from typing import Any

from .progress import ProgressArg, interactive

__all__ = ["connect_scheduler", "map_pieces", "resolve_executor"]


def resolve_executor(executor: Any) -> Executor | None:
    """Return the :class:`~concurrent.futures.Executor` behind ``executor``.

    Parameters
    ----------
    executor : None, concurrent.futures.Executor or dask.distributed.Client
        ``None`` runs the pieces one after the other in this process.

    Returns
    -------
    Executor or None

    Raises
    ------
    TypeError
        For anything else.
    """
    if executor is None or isinstance(executor, Executor):
        return executor
    get = getattr(executor, "get_executor", None)
    if callable(get) and type(executor).__module__.startswith("distributed"):
        return get()
    raise TypeError(
        "executor must be None, a concurrent.futures.Executor or a dask.distributed.Client, "
        f"got {type(executor).__name__}"
    )


class _Limited:
    """``fn`` run with BLAS and Numba thread pools limited to ``threads`` (picklable)."""

    def __init__(self, fn: Callable[[Any], Any], threads: int) -> None:
        self.fn = fn
        self.threads = threads

    def __call__(self, piece: Any) -> Any:
        from threadpoolctl import threadpool_limits

        numba = sys.modules.get("numba")
        previous = None
        if numba is not None:
            previous = numba.get_num_threads()
            numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))
        try:
            with threadpool_limits(self.threads):
                return self.fn(piece)
        finally:
            if numba is not None and previous is not None:
                numba.set_num_threads(previous)


class _Counter:
    """Finished pieces out of ``total``: a tqdm bar, a callable fed lines, or nothing."""

    def __init__(self, progress: ProgressArg, total: int, desc: str) -> None:
        self.total, self.desc, self.done = total, desc, 0
        self._emit: Callable[[str], None] | None = None
        self._bar: Any = None
        if callable(progress) and not isinstance(progress, bool):
            self._emit = progress
        elif progress is not False:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                desc=desc,
                unit="piece",
                file=sys.stderr,
                disable=progress is None and not interactive(),
                leave=False,
                dynamic_ncols=True,
            )

    def step(self) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)
        if self._emit is not None:
            self._emit(f"{self.desc}: {self.done}/{self.total} done")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def map_pieces[T, R](
    fn: Callable[[T], R],
    pieces: Iterable[T],
    *,
    executor: Any = None,
    threads_per_piece: int = 1,
    progress: ProgressArg = None,
    desc: str = "pieces",
) -> list[R]:
    """``[fn(p) for p in pieces]``, on ``executor``, in the order of ``pieces``.

    Parameters
    ----------
    fn : callable
        Applied to each piece. With a process pool or Dask it must be picklable (a
        module-level function or a :func:`functools.partial` of one).
    pieces : iterable
        The independent pieces of work, each carrying its own seed.
    executor : None, concurrent.futures.Executor or dask.distributed.Client
        Where the pieces run (see :func:`resolve_executor`); ``None``: serially here.
    threads_per_piece : int
        BLAS and Numba threads each piece may use.
    progress : bool, None or callable
        A bar counting finished pieces: ``None`` shows it when stderr reaches a person,
        ``True`` always, ``False`` never; a callable gets one line per finished piece.
    desc : str
        The bar's label.

    Returns
    -------
    list
        The results, in the order of ``pieces`` whatever order they finished in.

    Raises
    ------
    ValueError
        If ``threads_per_piece`` is below 1.
    TypeError
        If ``executor`` is of an unknown kind.
    Exception
        The first exception a piece raised (the remaining pieces are cancelled).
    """
    if int(threads_per_piece) < 1:
        raise ValueError(f"threads_per_piece must be at least 1, got {threads_per_piece}")
    ex = resolve_executor(executor)
    items: Sequence[Any] = list(pieces)
    task = _Limited(fn, int(threads_per_piece))
    counter = _Counter(progress, len(items), desc)
    try:
        if ex is None:
            out = []
            for p in items:
                out.append(task(p))
                counter.step()
            return out
        futures: dict[Future, int] = {ex.submit(task, p): i for i, p in enumerate(items)}
        results: list[Any] = [None] * len(items)
        try:
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                counter.step()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
        return results
    finally:
        counter.close()


def connect_scheduler(address: str, *, timeout: float = 10.0) -> Any:
    """Connect a ``dask.distributed.Client`` to the scheduler at ``address``.

    Parameters
    ----------
    address : str
        The scheduler's address, e.g. ``"tcp://10.0.0.5:8786"``.
    timeout : float
        Seconds to wait for the scheduler.

    Returns
    -------
    dask.distributed.Client

    Raises
    ------
    ImportError
        If ``dask.distributed`` is not installed (``pip install poisson-nmf[dask]``).
    ValueError
        If no scheduler answers at ``address`` within ``timeout`` seconds.
    """
    try:
        from distributed import Client
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "a Dask scheduler needs dask.distributed: pip install 'poisson-nmf[dask]'"
        ) from err
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError) as err:
        raise ValueError(
            f"could not reach a Dask scheduler at {address!r} within {timeout:g} s: "
            "check the address and that the scheduler is running"
        ) from err
