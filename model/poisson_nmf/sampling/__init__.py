"""Full posterior sampling of Poisson NMF, one module per stage of a run.

The public entry point is :func:`poisson_nmf.sample_posterior` (:mod:`.api`). The
modules, in the order a run uses them:

- :mod:`.plan`: the arguments settled, the memory planned, the seeds spawned;
- :mod:`.kernels`: the Numba log density and its gradient (dense and sparse);
- :mod:`.density`: :class:`~.density.LogDensity`, :func:`~.density.log_density`;
- :mod:`.starts`: named start strategies (at the MAP, at restarts, given values);
- :mod:`.coordinates`: the sampler's coordinates x = L (s * (M y));
- :mod:`.warmup`: the warm-up schedule (a pure function) and the learned directions;
- :mod:`.callbacks`: the user-data record (named slots) and nutpie's C callbacks;
- :mod:`.cache`: Numba's disk cache, filled in a process of its own;
- :mod:`.nutpie_model`: the only module touching nutpie's internals;
- :mod:`.engine`: running the chains (nutpie in threads, or PyMC);
- :mod:`.stopping`: sampling until clean, and resuming a run;
- :mod:`.postprocess`: aligned draws, the result groups, provenance;
- :mod:`.pointwise`: the pointwise log-likelihood and predictive groups;
- :mod:`.modes`: which mode each chain sits in.

Importing this package imports none of them (they load Numba, nutpie or PyMC).
"""
