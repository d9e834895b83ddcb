"""The result tree's provenance: every setting and attribute, in one place."""

import json

EXPECTED_ATTRS = {
    "settings", "modes", "normalize", "map_objective", "sampling_time_s", "sampler",
    "stopping", "inference_library", "poisson_nmf_version", "total_time_s",
}  # fmt: skip
EXPECTED_SETTINGS = {
    "n_components", "priors", "draws", "tune", "chains", "cores", "sampler", "precision",
    "normalize", "init", "jitter", "keep", "pointwise_draws", "max_memory", "memory",
    "random_seed", "replay_seed", "chain_seeds", "map_kwargs", "nuts_kwargs",
}  # fmt: skip


def test_provenance_is_complete(small_tree):
    assert set(small_tree.attrs) == EXPECTED_ATTRS
    settings = json.loads(small_tree.attrs["settings"])
    assert set(settings) == EXPECTED_SETTINGS
    assert settings["replay_seed"] == 7 and len(settings["chain_seeds"]) == 2
    assert json.loads(small_tree.attrs["stopping"])["rule"] == "fixed"
    assert small_tree.attrs["inference_library"] == "nutpie"


def test_groups_and_reference(small_tree):
    assert set(small_tree.children) == {
        "posterior", "sample_stats", "reference", "observed_data", "log_likelihood",
        "posterior_predictive", "sampler_state",
    }  # fmt: skip
    ss = small_tree["sample_stats"]
    assert {"log_likelihood", "permutation", "scale", "lp", "diverging"} <= set(ss.data_vars)
    # the reference is normalised like the draws (normalize="W": columns of W sum to one)
    assert abs(float(small_tree["reference"]["W"].sum("row").max()) - 1.0) < 1e-12
