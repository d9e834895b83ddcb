"""Sample until clean: the stopping rule of :func:`poisson_nmf.sample_posterior`.

With ``draws=None`` every chain is one nutpie run of ``max_draws`` draws, continuing
its tuned warm-up (:mod:`poisson_nmf.sampling.continuation`), **paused at
checkpoints** (every ``check_every`` draws per chain) and stopped at
the first checkpoint where every entry of W and H, normalised and aligned as reported,
meets the thresholds. The kept draws are then a prefix of that run: a chain's draws do
not depend on ``num_draws``, nor on when it was paused (nutpie draws them one after the
other from the chain's own generator; checked in ``tests/sampling/test_stopping.py``),
so the same seed gives the same draws whatever the rule decides, and a run stopped at d
draws holds exactly the draws of ``draws=d``. No new warm-up, step size or mass matrix:
the chains simply go on.

The rule is diagnose's (:mod:`poisson_nmf.convergence`): rank-normalised R-hat at most
``target_rhat`` and bulk and tail ESS at least ``max(target_ess, 100 x chains)`` on every
entry, entries constant by construction left out and undefined values counted as
failures, so that a run that stops clean passes :func:`poisson_nmf.diagnose`'s sampling
checks whatever the number of chains. Divergences are not part of the rule (more draws
do not remove them); diagnose still reports them.

Each check aligns only the new block of draws (alignment is draw by draw) and computes
R-hat and ESS on all draws so far (:mod:`poisson_nmf.ess_rhat`, ArviZ's numbers for all
entries at once). A check that finds the run not clean needs only one failing entry:
each check first computes the entries that were worst at the last check that computed
every entry (the ``SUSPECTS`` fraction of them, at least ``MIN_SUSPECTS``) and, if any
of those fails, stops there; only a check that finds them all passing computes every
entry. The decision is the same as computing every entry each time (a failing entry is
a failure wherever it is found); the figures recorded for such a check
(``attrs["stopping"]["checks"]``, the progress bar) are over the entries it computed,
which it records as ``entries_checked`` (another entry may be worse by then).
Checkpoints are ``check_every`` = 500 draws apart, and after a check that took more
than ``OVERLAP_AFTER_S`` the chains go on sampling during the next one (draws past a
stop are discarded; the kept ones are the same).

Memory: nutpie holds the draws of (log W, log H) of each chain, up to ``max_draws`` per
chain (8 bytes x chains x max_draws x (F + N) K), and the rule an aligned copy of the
draws so far; the pointwise groups stay thinned (``pointwise_draws``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..align import Normalize, align_factors
from ..convergence import ConvergenceSummary, constant_mask, summarize_convergence
from ..ess_rhat import rank_diagnostics
from ..exceptions import warn_user
from ..io import is_loadings_tree
from ..observed import observed_counts, same_counts

__all__ = ["ConvergenceMonitor", "StoppingRule", "run_until"]

#: draws per chain between two checks of the rule
CHECK_EVERY = 500
#: default budget of draws per chain
MAX_DRAWS = 4000
#: a check first computes this fraction of the entries, the worst at the last full check
SUSPECTS = 0.01
#: ... and at least this many
MIN_SUSPECTS = 64
#: a check that took longer than this (seconds) lets the chains go on during the next
#: (scheduling only: the draws are the same either way); on small tables a check takes a
#: fraction of a second and the chains' overshoot past a stop would cost more
OVERLAP_AFTER_S = 2.0


@dataclass(frozen=True)
class StoppingRule:
    """When to stop drawing.

    Attributes
    ----------
    target_rhat : float
        Largest rank-normalised R-hat allowed on any entry.
    target_ess : float
        Smallest bulk and tail ESS asked for (over all chains).
    chains : int
    max_draws : int
        Budget of draws per chain (reproducible).
    max_time : float or None
        Budget in seconds of sampling (warm-up included), checked at each checkpoint;
        machine-dependent.
    check_every : int
        Draws per chain between checks.
    start : int
        Draws per chain already known not to be clean (a resumed run): checks start
        after them.
    """

    target_rhat: float = 1.01
    target_ess: float = 400.0
    chains: int = 4
    max_draws: int = MAX_DRAWS
    max_time: float | None = None
    check_every: int = CHECK_EVERY
    start: int = 0

    @property
    def ess_min(self) -> float:
        """The ESS threshold used: ``max(target_ess, 100 x chains)`` (diagnose's floor)."""
        from ..diagnostics import THRESHOLDS  # here: diagnostics imports this module

        return max(float(self.target_ess), THRESHOLDS["ess_per_chain"] * self.chains)

    def checkpoints(self) -> list[int]:
        """Draws per chain at which the rule is checked, the last being ``max_draws``."""
        pts = list(range(self.check_every, self.max_draws, self.check_every)) + [self.max_draws]
        return [d for d in pts if d > self.start] or [self.max_draws]

    def assess(self, x: np.ndarray) -> tuple[ConvergenceSummary, np.ndarray]:
        """Diagnose's convergence summary of draws ``x`` against these thresholds.

        Parameters
        ----------
        x : numpy.ndarray, shape (chains, draws, n_entries)
            Normalised, aligned draws (:func:`poisson_nmf.convergence.flat_draws`).

        Returns
        -------
        summary : ConvergenceSummary
        badness : numpy.ndarray, shape (n_entries,)
            How far each entry is from passing: ``max((R-hat - 1) / (target_rhat - 1),
            ess_min / min(bulk ESS, tail ESS))``, above 1 where it fails; infinite where
            undefined, minus infinity where constant by construction.
        """
        d = rank_diagnostics(x, mcse=False)
        const = constant_mask(x)
        table = pd.DataFrame(
            {"r_hat": d.r_hat, "ess_bulk": d.ess_bulk, "ess_tail": d.ess_tail, "constant": const}
        )
        chains = x.shape[0]
        summary = summarize_convergence(
            table, chains, r_hat_max=self.target_rhat, ess_min=self.ess_min
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            ess = np.minimum(d.ess_bulk, d.ess_tail)
            bad = self.ess_min / ess
            if chains > 1:
                bad = np.maximum(bad, (d.r_hat - 1) / (self.target_rhat - 1))
                undefined = ~(np.isfinite(ess) & np.isfinite(d.r_hat))
            else:
                undefined = ~np.isfinite(ess)
        bad = np.where(undefined, np.inf, bad)
        return summary, np.where(const, -np.inf, bad)


def check_rule_args(target_rhat: Any, target_ess: Any, max_draws: Any, max_time: Any) -> None:
    """Raise ValueError for thresholds or budgets that cannot be met or make no sense."""
    if isinstance(target_rhat, bool) or not isinstance(target_rhat, int | float):
        raise TypeError(f"target_rhat must be a number > 1, got {target_rhat!r}")
    if not target_rhat > 1.0:
        raise ValueError(f"target_rhat must be > 1 (R-hat is 1 at best), got {target_rhat!r}")
    if isinstance(target_ess, bool) or not isinstance(target_ess, int | float):
        raise TypeError(f"target_ess must be a positive number, got {target_ess!r}")
    if not target_ess > 0:
        raise ValueError(f"target_ess must be > 0, got {target_ess!r}")
    if isinstance(max_draws, bool) or not isinstance(max_draws, int | np.integer) or max_draws < 1:
        raise ValueError(f"max_draws must be a positive integer, got {max_draws!r}")
    if max_time is not None and (
        isinstance(max_time, bool) or not isinstance(max_time, int | float) or not max_time > 0
    ):
        raise ValueError(f"max_time must be None or a number of seconds > 0, got {max_time!r}")


@dataclass
class ConvergenceMonitor:
    """The rule applied to blocks of draws as they come.

    Parameters
    ----------
    rule : StoppingRule
    unpack : callable
        x (d, n) -> (W (d, F, K), H (d, K, N)): the sampler's draws as factors.
    W_ref, H_ref : numpy.ndarray
        The alignment reference (as :func:`poisson_nmf.sample_posterior` uses it).
    normalize : {"W", "H"}
    status : callable, optional
        Called with a one-line summary after each check (the progress bar).
    """

    rule: StoppingRule
    unpack: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    W_ref: np.ndarray
    H_ref: np.ndarray
    normalize: Normalize
    status: Callable[[str], None] | None = None
    t0: float = field(default_factory=time.perf_counter)
    checks: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    last_check_s: float = 0.0
    _x: np.ndarray | None = None  # (chains, capacity, n_entries), the first _n draws set
    _n: int = 0
    _suspects: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the draws and checks so far (a discarded attempt's)."""
        self._x, self._n, self.checks = None, 0, []
        self.reason, self.last_check_s, self._suspects = "", 0.0, None

    def release(self) -> None:
        """Drop the aligned copy of the draws once the rule has decided (keeps the record)."""
        self._x, self._n, self._suspects = None, 0, None

    def add(self, blocks: list[np.ndarray]) -> None:
        """Align and keep a new block of draws of x per chain (d_new, n).

        Kept in one array of shape (chains, draws, n_entries), W's entries then H's, each
        in C order, as :func:`poisson_nmf.convergence.flat_draws` orders them. The array
        is allocated once for ``rule.max_draws`` draws per chain (its pages are touched
        only as draws arrive), so that a check reads the draws in place: on all digits
        at the defaults a stacked copy for each check was 0.89 GB (4 x 1500 x 18,580
        float64 values).
        """
        d = blocks[0].shape[0]
        for c, x in enumerate(blocks):
            W, H = self.unpack(x)
            al = align_factors(W, H, self.W_ref, self.H_ref, normalize=self.normalize)
            flat = np.concatenate([al.W.reshape(d, -1), al.H.reshape(d, -1)], 1)
            if self._x is None:
                self._x = self._allocate(len(blocks), d, flat.shape[1], flat.dtype)
            elif c == 0 and self._n + d > self._x.shape[1]:  # more draws than it holds
                cap = max(min(2 * self._x.shape[1], self.rule.max_draws), self._n + d)
                grown = np.empty((self._x.shape[0], cap, self._x.shape[2]), self._x.dtype)
                grown[:, : self._n] = self._x[:, : self._n]
                self._x = grown
            self._x[c, self._n : self._n + d] = flat
        self._n += d

    def _allocate(self, chains: int, d: int, n_entries: int, dtype: Any) -> np.ndarray:
        """Return the array for the draws: for ``max_draws``, or smaller if refused.

        A budget far beyond what the run needs (``max_memory=None`` with a huge
        ``max_draws``) can be refused by the operating system at once; the array then
        starts at two checks' worth and doubles as draws arrive.
        """
        full = max(self.rule.max_draws, d)
        try:
            return np.empty((chains, full, n_entries), dtype=dtype)
        except MemoryError:
            small = max(min(full, 2 * self.rule.check_every), d)
            if small == full:
                raise
            return np.empty((chains, small, n_entries), dtype=dtype)

    def draws(self, entries: np.ndarray | None = None) -> np.ndarray:
        """Return the aligned draws so far, (chains, draws, entries), or of ``entries``.

        Without ``entries`` this is a view of the monitor's array (no copy).
        """
        if self._x is None:
            raise RuntimeError("no draws held (none added yet, or released)")
        x = self._x[:, : self._n]
        return x if entries is None else x[:, :, entries]

    def __call__(self, blocks: list[np.ndarray], draws: int) -> bool:
        """Add the blocks that end at ``draws`` per chain; whether to stop there."""
        self.add(blocks)
        if draws <= self.rule.start:  # replayed draws of a resumed run: known not clean
            return False
        t = time.perf_counter()
        s, checked = self._check()
        self.last_check_s = time.perf_counter() - t
        self.checks.append(
            {
                "draws": int(draws),
                "worst_r_hat": _num(s.worst_r_hat),
                "min_ess_bulk": _num(s.min_ess_bulk),
                "min_ess_tail": _num(s.min_ess_tail),
                "n_undefined": s.n_undefined,
                "clean": bool(s.clean),
                "entries_checked": checked,
                "seconds": round(self.last_check_s, 3),
            }
        )
        if self.status is not None:
            ess = min(s.min_ess_bulk, s.min_ess_tail)
            which = f"of {checked} screened entries" if self._screened(checked) else "entry"
            self.status(
                f"slowest {which}: R-hat {s.worst_r_hat:.3f}, ESS {ess:.0f}"
                f" (target <= {self.rule.target_rhat:g}, >= {self.rule.ess_min:g})"
            )
        elapsed = time.perf_counter() - self.t0
        if s.clean:
            self.reason = "clean"
        elif draws >= self.rule.max_draws:
            self.reason = "max_draws"
        elif self.rule.max_time is not None and elapsed >= self.rule.max_time:
            self.reason = "max_time"
        return bool(self.reason)

    def _screened(self, checked: int) -> bool:
        """Whether a check that computed ``checked`` entries left some out."""
        return self._x is not None and checked < self._x.shape[2]

    def _check(self) -> tuple[ConvergenceSummary, int]:
        """Summary of this check (the suspects first) and the number of entries computed."""
        n_entries = self.draws().shape[2]
        if self._suspects is not None and self._suspects.size < n_entries:
            s, _ = self.rule.assess(self.draws(self._suspects))
            if not s.clean:
                return s, int(self._suspects.size)
        s, bad = self.rule.assess(self.draws())
        n = max(MIN_SUSPECTS, int(np.ceil(SUSPECTS * bad.size)))
        self._suspects = np.sort(np.argsort(-bad, kind="stable")[:n])
        return s, int(bad.size)

    def record(self, draws: int, resumed_from: int | None = None) -> str:
        """``attrs["stopping"]``: the rule, its thresholds, why it stopped, the draws."""
        r = self.rule
        return json.dumps(
            {
                "rule": "until_clean",
                "target_rhat": r.target_rhat,
                "target_ess": r.target_ess,
                "ess_min": r.ess_min,
                "check_every": r.check_every,
                "max_draws": r.max_draws,
                "max_time": r.max_time,
                "reason": self.reason or "max_draws",
                "draws_per_chain": int(draws),
                "resumed_from": resumed_from,
                "checks": self.checks,
            }
        )


def fixed_record(draws: int, resumed_from: int | None = None) -> str:
    """``attrs["stopping"]`` of a run with an explicit number of draws."""
    return json.dumps(
        {
            "rule": "fixed",
            "reason": "fixed",
            "draws_per_chain": int(draws),
            "resumed_from": resumed_from,
        }
    )


def _num(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def run_until(
    base: Any,
    starts: list[np.ndarray],
    seeds: list[int],
    tune: int,
    cores: int,
    kw: dict,
    monitor: ConvergenceMonitor,
    progress: Any = None,
    done: int = 0,
    poll: float = 0.02,
    abort_on_divergence: bool = False,
    chain_kws: Sequence[dict] | None = None,
    offset: int = 0,
) -> list[tuple[np.ndarray, xr.Dataset]]:
    """Run one nutpie chain per start for up to ``max_draws`` draws, stopping by the rule.

    All chains are created at once; at most ``cores`` run at a time, the others paused,
    and each is paused when it reaches the next checkpoint. When every chain has, the
    new block of each is read (``inspect``) and handed to ``monitor``; the chains go on
    unless it says stop, and are then cancelled. Returns the draws of x (d, n) and the
    sample stats of the kept prefix, per chain (as
    :func:`poisson_nmf.sampling.engine.run_chains` does).

    ``progress`` (a :class:`poisson_nmf.progress.SamplingProgress`) hears of each chain's
    iterations, ``done`` of them run in earlier warm-up stages. ``abort_on_divergence``:
    raise :class:`~poisson_nmf.sampling.adaptation.DivergedAttempt` as soon as a draw
    that would be kept diverges (:func:`~poisson_nmf.sampling.adaptation.settle_final_stage`
    then redoes the stage).

    ``base`` is the nutpie model, or a list of one per chain; ``chain_kws`` adds settings
    per chain. ``offset``: draws per chain the monitor already holds (a resumed run);
    the samplers' draws come after them, and the rule's checkpoints count them.
    """
    import nutpie

    from .engine import chain_model

    rule = monitor.rule
    C = len(starts)
    finished = np.zeros(C, dtype=np.int64)  # iterations (tuning and draws), from callbacks
    lock = threading.Lock()
    samplers: list[Any] = []
    paused = np.zeros(C, dtype=bool)
    first_div = np.full(C, np.iinfo(np.int64).max)  # first diverging draw after tuning

    def callback_for(c: int) -> Callable[[Any], None]:
        inner = None
        if progress is not None and progress.active:
            inner = progress.nutpie_callback(c, done, tune)

        def cb(chains_progress: Any) -> None:
            with lock:
                finished[c] = max(int(finished[c]), int(chains_progress[0].finished_draws))
                if abort_on_divergence:
                    kept = [d - tune for d in chains_progress[0].divergent_draws if d >= tune]
                    first_div[c] = min([int(first_div[c]), *kept])
            if inner is not None:
                inner(chains_progress)

        return cb

    try:
        for c in range(C):
            more = chain_kws[c] if chain_kws is not None else {}
            s = nutpie.sample(chain_model(base, c, starts[c]), draws=rule.max_draws - offset,
                              tune=tune, chains=1, cores=1, seed=seeds[c], blocking=False,
                              progress_callback=callback_for(c), progress_rate=50, **kw,
                              **more)  # fmt: skip
            samplers.append(s)
            if c >= cores:
                s.pause()
                paused[c] = True

        def schedule(target: int) -> bool:
            """Run at most ``cores`` chains short of ``target``, pause the rest; any left."""
            with lock:
                short = [c for c in range(C) if finished[c] < target]
            below = [c for c in short if not _is_finished(samplers[c])]
            run = set(below[:cores])
            for c in range(C):
                if c in run and paused[c]:
                    samplers[c].resume()
                    paused[c] = False
                elif c not in run and not paused[c] and not _is_finished(samplers[c]):
                    samplers[c].pause()
                    paused[c] = True
            return bool(below)

        prev = 0
        # each sampler's own draws: the rule's checkpoints less those held before
        points = [p - offset for p in rule.checkpoints()]
        for i, d in enumerate(points):
            while schedule(tune + d):
                _abort_if_diverged(first_div, d)
                time.sleep(poll)
            _abort_if_diverged(first_div, d)
            blocks = _read_blocks(samplers, prev, d)
            if monitor.last_check_s > OVERLAP_AFTER_S and i + 1 < len(points):
                schedule(tune + points[i + 1])  # the chains go on while the rule is checked
            stop = monitor(blocks, offset + d)
            kept = d
            prev = d
            if stop:
                break
        monitor.release()  # decided: the aligned copy goes before the kept draws are read
        return _kept_prefix(samplers, kept, progress, done + tune)
    finally:
        for s in samplers:
            if not _is_finished(s):
                s.cancel()


def _read_blocks(samplers: list[Any], prev: int, d: int) -> list[np.ndarray]:
    """Return each chain's draws prev:d of x.

    Each chain's trace is read (``inspect``: a copy of all its draws, warm-up included)
    and dropped before the next is read, so that one such copy is held at a time (on
    all digits at the defaults, holding all four took the run from 3.5 to 5.5 GB).
    """
    blocks = []
    for c, sampler in enumerate(samplers):
        x = sampler.inspect()["posterior"]["x"].values[0]
        if x.shape[0] < d:
            raise RuntimeError(f"chain {c}: {x.shape[0]} draws at checkpoint {d}")
        blocks.append(np.array(x[prev:d]))
        del x
    return blocks


def _kept_prefix(
    samplers: list[Any], kept: int, progress: Any, before: int
) -> list[tuple[np.ndarray, xr.Dataset]]:
    """Return the first ``kept`` draws of x and sample stats of each chain, read anew.

    One trace is held at a time (as in :func:`_read_blocks`); a chain that went on past
    ``kept`` during the last check gives the same first ``kept`` draws. ``progress``
    hears of each chain's iterations (``before`` them: the warm-up).
    """
    out = []
    for c, sampler in enumerate(samplers):
        tr = sampler.inspect()
        x = np.array(tr["posterior"]["x"].values[0][:kept])
        st = tr["sample_stats"].to_dataset().isel(chain=0, drop=True)
        st = st.isel(draw=slice(0, kept)).load()
        if progress is not None:
            progress.update(c, before + kept, int(st["diverging"].values.sum()))
        out.append((x, st))
        del tr
    return out


def _abort_if_diverged(first_div: np.ndarray, d: int) -> None:
    """Raise DivergedAttempt if a chain diverged within its first ``d`` kept draws."""
    if first_div.min() < d:
        from .adaptation import DivergedAttempt

        raise DivergedAttempt(int(first_div.min()) + 1)


def _is_finished(sampler: Any) -> bool:
    """Whether a nutpie sampler is done (its check times out while it is busy: not done)."""
    try:
        return bool(sampler.is_finished)
    except TimeoutError:
        return False


@dataclass(frozen=True)
class ResumeSettings:
    """What a resumed run takes from the run it continues (its ``attrs["settings"]``)."""

    priors: Any
    tune: int
    chains: int
    sampler: Any
    precision: Any
    normalize: Any
    init: str
    jitter: float
    seed: int | None  # the replay seed (None: the run cannot be replayed)
    draws: int


#: sample_posterior's arguments that a resumed run takes from the stored one, and the
#: fields of :class:`ResumeSettings` they become
RESUMED = {"priors": "priors", "tune": "tune", "chains": "chains", "random_seed": "seed",
           "sampler": "sampler", "precision": "precision", "normalize": "normalize",
           "init": "init", "jitter": "jitter"}  # fmt: skip


def _stored_settings(tree: Any) -> dict[str, Any]:
    """Return the JSON ``settings`` of a sample_posterior tree (TypeError for anything else)."""
    if isinstance(tree, xr.DataTree) and is_loadings_tree(tree):
        raise TypeError(
            "resume: a fit_loadings tree (loadings given W) cannot be resumed, it has no "
            "chains of W and H to continue; pass a tree from sample_posterior (or load_fit "
            "of one), or call fit_loadings again with more draws"
        )
    if not isinstance(tree, xr.DataTree) or "settings" not in tree.attrs:
        raise TypeError(
            "resume must be a tree from sample_posterior or load_fit (with attrs['settings']), "
            f"got {type(tree).__name__}"
        )
    return dict(json.loads(tree.attrs["settings"]))


def _same_setting(given: Any, stored: Any) -> bool:
    """Whether a given setting equals the stored one (priors field by field, broadcast)."""
    from ..priors import GammaPriors

    if isinstance(stored, GammaPriors):
        if not isinstance(given, GammaPriors):
            return False
        try:
            return all(bool(np.all(np.asarray(getattr(given, f)) == np.asarray(getattr(stored, f))))
                       for f in ("w_shape", "w_rate", "h_shape", "h_rate"))  # fmt: skip
        except ValueError:  # shapes that do not broadcast
            return False
    if isinstance(given, bool) or not isinstance(given, str | int | float | np.number):
        return False  # a Generator seed, explicit starts: never the stored run's
    return bool(given == stored)


def resume_conflicts(tree: Any, given: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """Return ``(name, stored, given)`` for each given setting that differs from the run's.

    Parameters
    ----------
    tree : xarray.DataTree
        The run to resume (its ``attrs["settings"]``).
    given : dict
        Settings the user set, by :data:`RESUMED`'s names (``random_seed`` is compared
        with the run's replay seed).
    """
    rs = _settings_of(_stored_settings(tree), tree)
    out = []
    for name, val in given.items():
        stored = getattr(rs, RESUMED[name])
        if stored is not None and not _same_setting(val, stored):  # None: refused elsewhere
            out.append((name, stored, val))
    return out


def _settings_of(st: dict[str, Any], tree: Any) -> ResumeSettings:
    """Return the stored run's settings as a :class:`ResumeSettings` (seed: replay seed)."""
    from ..priors import GammaPriors

    pri = GammaPriors(**{k: np.asarray(v) if isinstance(v, list) else v
                         for k, v in st["priors"].items()})  # fmt: skip
    replay = st.get("replay_seed")
    return ResumeSettings(
        priors=pri,
        tune=int(st["tune"]),
        chains=int(st["chains"]),
        sampler=st["sampler"],
        precision=st["precision"],
        normalize=st["normalize"],
        init=st["init"],
        jitter=float(st["jitter"]),
        seed=None if replay is None else int(replay),
        draws=int(tree["posterior"].sizes["draw"]),
    )


def resume_settings(
    tree: Any,
    counts: Any,
    n_components: int,
    *,
    map_kwargs: Any,
    nuts_kwargs: Any,
    given: dict[str, Any] | None = None,
) -> ResumeSettings:
    """Return the settings of the run ``tree`` to replay and continue, checked.

    ``given`` holds the settings of :data:`RESUMED` that the caller set explicitly
    (sample_posterior: those not at their defaults); each must equal the run's.

    Raises
    ------
    TypeError
        ``tree`` is not a DataTree from :func:`poisson_nmf.sample_posterior`.
    ValueError
        The counts, ``n_components``, ``map_kwargs`` or ``nuts_kwargs`` differ from the
        run's, a ``given`` setting differs from the run's, the run cannot be
        continued (seeded with a Generator, explicit starts, chains dropped by
        ``keep``, a nutpie fit without ``sampler_state``) or its stored sampler state
        is invalid or not its chains' own (:func:`~poisson_nmf.sampling.continuation.check_state`).
    """
    st = _stored_settings(tree)
    if tree.attrs.get("method") == "vi":
        raise ValueError(
            "resume: a variational fit (method='vi') has no chains to continue; run "
            "method='nuts' for exact draws, or sample_vi again with more draws"
        )
    if st.get("replay_seed") is None:
        raise ValueError(
            "resume: this run cannot be replayed (it was seeded with a Generator or made "
            "before replay seeds were recorded); start a new run with an int random_seed"
        )
    if st.get("sampler") == "nutpie" and "sampler_state" not in tree.children:
        raise ValueError(
            "resume: this fit holds no sampler_state (made before 2026-12-01, or the group "
            "was dropped), so its chains cannot be continued; start a new run"
        )
    if st.get("init") not in ("map", "restarts"):
        raise ValueError("resume: the run started from explicit init values, which are not stored")
    if int(st["n_components"]) != n_components:
        raise ValueError(
            f"resume: the run has n_components={st['n_components']}, not {n_components}"
        )
    same = "observed_data" in tree.children and same_counts(observed_counts(tree), counts)
    if not same:
        raise ValueError("resume: V (or its mask) differs from the counts the run was fitted to")
    for name, kw in (("map_kwargs", map_kwargs), ("nuts_kwargs", nuts_kwargs)):
        stored_kw = st.get(name, {})
        if not same_kwargs(kw, stored_kw):
            raise ValueError(
                f"resume: {name} {dict(kw or {})} differ from the run's {stored_kw}; pass the same"
            )
    keep = st.get("keep", "all")
    C = int(st["chains"])
    if tree["posterior"].sizes["chain"] != C:
        raise ValueError(
            f"resume: the run kept {tree['posterior'].sizes['chain']} of its {C} chains "
            f"(keep={keep!r}); resume needs every chain"
        )
    if "sampler_state" in tree.children:
        from .continuation import check_state

        F, N = counts.shape
        check_state(tree, F, N, n_components)
    bad = resume_conflicts(tree, given or {})
    if bad:
        raise ValueError(
            "resume continues the stored run, whose "
            + ", ".join(f"{n}={v!r}" for n, v, _ in bad)
            + ": drop "
            + ", ".join(f"{n}={g!r}" for n, _, g in bad)
            + " or start a new run (without resume)"
        )
    return _settings_of(st, tree)


def kwargs_record(kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """Return ``map_kwargs`` / ``nuts_kwargs`` as stored in ``attrs["settings"]`` (JSON).

    Numbers, strings, booleans and None are stored as themselves (NumPy scalars as the
    Python ones); anything else as its ``repr``.
    """
    out: dict[str, Any] = {}
    for k, v in (kwargs or {}).items():
        v = v.item() if isinstance(v, np.generic) else v
        out[k] = v if isinstance(v, bool | int | float | str | type(None)) else repr(v)
    return out


def same_kwargs(given: dict[str, Any] | None, stored: dict[str, Any]) -> bool:
    """Return whether given keyword arguments are those stored.

    Fits saved before numbers were stored as numbers hold every value as its ``repr``:
    that is accepted too.
    """
    given = dict(given or {})
    if set(given) != set(stored):
        return False
    rec = kwargs_record(given)
    return all(rec[k] == stored[k] or repr(given[k]) == stored[k] for k in given)


def resumed_labels(tree: Any, counts: Any) -> Any:
    """Return ``counts`` with the stored run's row and column labels (same counts checked).

    An unlabelled V (labels 0, 1, ...) takes the run's labels, so a resumed fit keeps
    its names; labelled V whose labels differ from the run's is refused (ValueError).
    """
    from dataclasses import replace as _replace

    stored = observed_counts(tree)
    labels = {}
    for axis in ("row", "column"):
        old, new = getattr(stored, axis), getattr(counts, axis)
        if np.array_equal(old, new):
            continue
        if np.array_equal(new, np.arange(new.size)):  # V had no labels on this axis
            labels[axis] = old
            continue
        i = int(np.argmax([a != b for a, b in zip(old, new, strict=True)]))
        raise ValueError(
            f"resume: V's {axis} labels differ from the run's (position {i}: {new[i]!r}, "
            f"the run has {old[i]!r}); pass V with the run's labels, or without labels"
        )
    return _replace(counts, **labels) if labels else counts


def check_replay(old: Any, new: Any) -> None:
    """Warn when the replayed draws of a resumed run differ from the stored ones.

    Replays are exact on one machine and version; another machine's floating point
    (the float32 kernel's vector width, for instance) may take the chains elsewhere.
    """
    a = old["posterior"]["W"].values
    d = a.shape[1]
    b = new["posterior"]["W"].values[:, :d]
    if a.shape != b.shape or not np.allclose(a, b, rtol=1e-6, atol=0.0):
        warn_user(
            "resume: the replayed draws differ from the stored ones (another machine or "
            "version?): the result is a new run with the same settings, not a continuation",
            UserWarning,
        )


def budget_advice(attrs: Any) -> str:
    """Return what to do when a run stopped unclean at its budget (for diagnose).

    Returns ``""`` for runs that did not stop at a budget (or carry no record).
    """
    try:
        stop = json.loads(attrs["stopping"])
    except (KeyError, TypeError, ValueError):
        return ""
    if stop.get("reason") not in ("max_draws", "max_time"):
        return ""
    d = int(stop["draws_per_chain"])
    return (
        f"; the run stopped at its budget ({stop['reason']}, {d} draws per chain): continue "
        f"its chains with sample_posterior(V, K, resume=idata, max_draws={2 * d}) or "
        f"poisson-nmf fit DATA --resume FIT --max-draws {2 * d}"
    )
