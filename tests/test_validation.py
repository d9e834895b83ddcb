"""The shared argument checks and the default priors."""

import numpy as np
import pytest

import poisson_nmf as pnmf
from poisson_nmf._validation import (
    DEFAULT_PRIORS,
    check_choice,
    check_int,
    check_positive_int,
    check_priors,
)


def test_check_int_accepts_numpy_integers_and_refuses_bools():
    assert check_int(np.int32(3), "folds", 2) == 3
    for bad in (True, 1, 2.0, "3"):
        with pytest.raises(ValueError, match=r"folds must be an integer >= 2, got"):
            check_int(bad, "folds", 2)
    with pytest.raises(ValueError, match="max_iter must be a positive integer, got 0"):
        check_positive_int(0, "max_iter")


def test_check_choice_names_the_choices():
    assert check_choice("mu", "method", ("cd", "mu")) == "mu"
    with pytest.raises(ValueError, match=r"method must be one of \('cd', 'mu'\), got 'x'"):
        check_choice("x", "method", ("cd", "mu"))


def test_check_priors():
    assert check_priors(None) is None
    with pytest.raises(ValueError, match="improper posterior"):
        check_priors(None, allow_flat=False)
    with pytest.raises(TypeError, match="priors must be a GammaPriors or None, got dict"):
        check_priors({})
    with pytest.raises(TypeError, match="priors must be a GammaPriors, got dict"):
        check_priors({}, allow_flat=False)
    low = pnmf.GammaPriors(w_shape=0.5)
    assert check_priors(low) is low  # sampling accepts any shape > 0
    with pytest.raises(ValueError, match="w_shape < 1 has no mode"):
        check_priors(low, need_mode=True)


def test_one_default_prior_everywhere():
    import inspect

    from poisson_nmf import calibration, model

    assert DEFAULT_PRIORS == pnmf.GammaPriors()
    assert inspect.signature(model.build_model).parameters["priors"].default is DEFAULT_PRIORS
    assert inspect.signature(calibration.run_sbc).parameters["priors"].default is DEFAULT_PRIORS
