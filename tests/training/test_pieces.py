"""Per-piece evaluation (`training.pieces`, `python -m trainers.pieces`): each piece alone at
batch 1 adds up to the trainer's batched, padded evaluation of the split."""

import dataclasses
import json

import numpy as np
import pytest

from tf_latentflow.training import Trainer, default_config
from tf_latentflow.training.pieces import PieceTerms, piece_terms, summarize
from training_testing import TINY, synthetic_music_bundle


def tiny_trainer(tmp_path, model, **overrides):
    config = default_config("jsb", model, str(tmp_path / model), **{**TINY, "seed": 5, **overrides})
    return Trainer(config, bundle=synthetic_music_bundle(seed=2, sizes=(8, 7, 5)), log=lambda *_: None)


def test_an_exact_likelihood_pieces_add_up_to_the_batched_evaluation(tmp_path):
    # The LSTM's NLL is exact: the pieces alone (batch 1, no padding) and the trainer's
    # padded batches of 4 must give the same corpus figure.
    trainer = tiny_trainer(tmp_path, "lstm")
    terms = piece_terms(trainer, "validation", num_samples=3)
    np.testing.assert_array_equal(terms.lengths, trainer.bundle.lengths["validation"])
    np.testing.assert_array_equal(terms.steps, terms.lengths + 1)
    batched = trainer.evaluate_nll("validation", 3)
    summary = summarize(terms, "jsb_chorales")
    assert summary["nll"] == pytest.approx(batched["nll"], rel=1e-5)
    assert summary["pieces"] == batched["sequences"] == 7
    np.testing.assert_allclose(terms.neg_elbo, terms.nll, rtol=1e-5)  # no latent: -ELBO = NLL
    np.testing.assert_array_equal(terms.kl, 0.0)


def test_a_flow_s_pieces_are_finite_seeded_and_their_own(tmp_path):
    trainer = tiny_trainer(tmp_path, "af-scf")
    first = piece_terms(trainer, "test", num_samples=4)
    again = piece_terms(trainer, "test", num_samples=4)
    for name in ("nll", "neg_elbo", "reconstruction", "kl"):
        values = getattr(first, name)
        assert values.shape == (5,) and np.all(np.isfinite(values))
        np.testing.assert_array_equal(values, getattr(again, name))  # stateless seeds per piece
    # Jensen on the same 4 samples: log mean w >= mean log w, piece by piece.
    assert np.all(first.nll <= first.neg_elbo + 1e-4 * np.abs(first.neg_elbo))
    assert np.all(first.nll < first.neg_elbo)
    # With 25 samples (3 chunks of at most 10) the -ELBO still comes from the NLL's own
    # samples: their reconstruction and KL, and log p(T) from the length model.
    chunked = piece_terms(trainer, "test", num_samples=25)
    log_p_length = trainer.model.length_model.log_prob(chunked.lengths).numpy()
    np.testing.assert_allclose(chunked.neg_elbo, chunked.reconstruction + chunked.kl - log_p_length, rtol=1e-6)
    assert np.all(chunked.nll < chunked.neg_elbo)
    # Another seed draws other samples (the estimator is random, the pieces' seeds are its own).
    other = tiny_trainer(tmp_path / "other", "af-scf", seed=6)
    other.model.set_weights(trainer.model.get_weights())
    assert not np.array_equal(piece_terms(other, "test", num_samples=4).nll, first.nll)


def test_summary_ranks_the_pieces_by_their_share_of_the_nats():
    lengths = np.array([9, 3, 20, 5])
    steps = lengths + 1.0
    nll = np.array([10.0, 30.0, 40.0, 20.0])
    terms = PieceTerms(split="validation", num_samples=2, lengths=lengths, steps=steps, nll=nll,
                       neg_elbo=nll + 1.0, reconstruction=nll / 2, kl=nll / 2)
    summary = summarize(terms, "jsb_chorales", top=3)
    assert summary["nll"] == pytest.approx(100.0 / 41.0)
    assert summary["neg_elbo"] == pytest.approx(104.0 / 41.0)
    assert [p["index"] for p in summary["worst"]] == [2, 1, 3]
    assert summary["worst"][0]["share_of_nll"] == pytest.approx(0.4)
    assert summary["worst"][0]["nll"] == pytest.approx(40.0 / 21.0)
    assert summary["worst"][1]["share_of_steps"] == pytest.approx(4.0 / 41.0)
    assert summary["nll_without_worst"] == {"1": pytest.approx(60.0 / 20.0), "3": pytest.approx(10.0 / 10.0)}
    assert summary["every_piece"]["length"] == [9, 3, 20, 5]
    # text: bits per character
    text = summarize(dataclasses.replace(terms, split="test"), "ptb", top=1)
    assert text["nll"] == pytest.approx(100.0 / 41.0 / np.log(2.0))


def test_cli_writes_the_record_of_a_trained_run(tmp_path, shared_data_dir, capsys):
    from trainers import pieces as pieces_cli
    from trainers.cli import main as train
    from tf_latentflow.training.config import MUSIC_DATASETS

    run_dir = tmp_path / "run"
    argv = ["--dataset", "jsb", "--model", "af-scf", "--data-dir", str(shared_data_dir),
            "--prepared-dir", str(tmp_path / "prepared"), "--output-dir", str(run_dir), "--epochs", "1",
            "--max-steps-per-epoch", "1", "--max-eval-batches", "1", "--kl-zero-epochs", "0",
            "--kl-ramp-epochs", "1", "--nll-samples", "2", "--latent-size", "4", "--embedding-size", "8",
            "--hidden-units", "8", "--prior-lstm-units", "8", "--num-flow-layers", "2",
            "--flow-hidden-units", "8", "--no-jit-compile"]
    assert train(argv, prog="trainers.music", datasets=MUSIC_DATASETS, default_dataset="jsb_chorales",
                 description="test") == 0
    config_before = (run_dir / "config.json").read_text()
    assert pieces_cli.main([str(run_dir), "--split", "test", "--prepared-dir", str(tmp_path / "prepared"),
                            "--top", "3"]) == 0
    record = json.loads((run_dir / "pieces-test.json").read_text())
    assert record["pieces"] == 77 and len(record["worst"]) == 3 and record["num_samples"] == 2
    assert record["checkpoint"].startswith("checkpoints/") and record["epoch"] == 1
    assert len(record["every_piece"]["nll"]) == 77 and all(np.isfinite(record["every_piece"]["nll"]))
    assert (run_dir / "config.json").read_text() == config_before  # evaluation writes nothing else
    assert "without the worst k pieces" in capsys.readouterr().out
