"""What the training loop reads: the splits of a real dataset, whole or a fixed training subset."""

import numpy as np
import pytest

from tf_latentflow.training import inputs
from tf_latentflow.training.config import default_config


def test_a_training_subset_is_the_same_sequences_for_every_model_and_seed(shared_data_dir, tmp_path):
    prepared_dir = str(tmp_path / "tfds")
    whole = inputs.load_data(default_config("jsb", "af-scf", "out", data_dir=str(shared_data_dir),
                                            prepared_dir=prepared_dir))
    configs = [default_config("jsb", model, "out", data_dir=str(shared_data_dir), prepared_dir=prepared_dir,
                              train_subset=50, seed=seed) for model, seed in (("af-scf", 0), ("lstm", 3))]
    bundles = [inputs.load_data(config) for config in configs]
    rolls = [[e["piano_roll"].tobytes() for e in b.splits["train"].as_numpy_iterator()] for b in bundles]
    assert len(rolls[0]) == 50 and rolls[0] == rolls[1]
    # the subset's sequences are training sequences, with their lengths in order
    full = {e["piano_roll"].tobytes(): int(e["length"]) for e in whole.splits["train"].as_numpy_iterator()}
    assert [full[r] for r in rolls[0]] == list(bundles[0].lengths["train"])
    keep = np.sort(np.random.default_rng(0).permutation(len(whole.lengths["train"]))[:50])
    np.testing.assert_array_equal(bundles[0].lengths["train"], whole.lengths["train"][keep])
    for split in ("validation", "test"):  # whole
        np.testing.assert_array_equal(bundles[0].lengths[split], whole.lengths[split])
    # an epoch covers the subset: every kept sequence once (batch 5, weight-0 filler rows)
    rows = [b for b in inputs.batches(configs[0], bundles[0], "train", epoch=0).as_numpy_iterator()]
    assert sum(int(b["weight"].sum()) for b in rows) == 50
    assert sorted(int(n) for b in rows for n, w in zip(b["lengths"], b["weight"]) if w > 0) == \
        sorted(bundles[0].lengths["train"])
    # p(T) is the whole training split's (a property of lengths, not of what the networks see)
    subset_p_t = inputs.length_model(configs[0], bundles[0])
    whole_p_t = inputs.length_model(configs[0], whole)
    assert subset_p_t.max_length == whole_p_t.max_length
    np.testing.assert_array_equal(subset_p_t.probs.numpy(), whole_p_t.probs.numpy())


@pytest.mark.slow  # the default suite's 10-minute budget
def test_ptb_with_a_training_subset_keeps_every_test_length_in_p_t(shared_data_dir, tmp_path):
    """Unsmoothed text p(T) from 300 training sentences would leave out the longest test
    sentence (the trainer then refused the run); from the whole split it does not."""
    config = default_config("ptb", "lstm", "out", data_dir=str(shared_data_dir),
                            prepared_dir=str(tmp_path / "tfds"), train_subset=300)
    bundle = inputs.load_data(config)
    assert bundle.lengths["train"].max() < bundle.lengths["test"].max()  # the case that failed
    p_t = inputs.length_model(config, bundle)
    assert np.all(p_t.probs.numpy()[bundle.lengths["test"]] > 0)
    expected = np.bincount(np.concatenate([bundle.full_train_lengths, bundle.lengths["validation"]]),
                           minlength=p_t.max_length + 1)
    np.testing.assert_allclose(p_t.probs.numpy(), expected / expected.sum(), rtol=1e-6)


def test_a_validation_subset_is_its_own_split_and_validation_stays_whole(shared_data_dir, tmp_path):
    config = default_config("jsb", "af-scf", "out", data_dir=str(shared_data_dir),
                            prepared_dir=str(tmp_path / "tfds"), validation_subset=20)
    bundle = inputs.load_data(config)
    assert inputs.epoch_validation_split(bundle) == inputs.EPOCH_VALIDATION
    whole = bundle.lengths["validation"]
    assert len(whole) == 76 and len(bundle.lengths[inputs.EPOCH_VALIDATION]) == 20
    keep = np.sort(np.random.default_rng(0).permutation(len(whole))[:20])
    np.testing.assert_array_equal(bundle.lengths[inputs.EPOCH_VALIDATION], whole[keep])
    assert [int(e["length"]) for e in bundle.splits[inputs.EPOCH_VALIDATION].as_numpy_iterator()] == \
        list(whole[keep])
    plain = inputs.load_data(default_config("jsb", "af-scf", "out", data_dir=str(shared_data_dir),
                                            prepared_dir=str(tmp_path / "tfds")))
    assert inputs.epoch_validation_split(plain) == "validation"
