"""Point estimates: the KL-NMF solver, the PyMC MAP and their comparison.

The modules import Numba (``kl``, ``kl_kernels``) or PyMC (``map``, ``compare``), so
the package's lazy ``__init__`` loads them on first use only.
"""
