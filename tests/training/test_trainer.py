"""The training loop on a tiny synthetic music dataset: resume, divergence, results."""

import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_latentflow import data as D
from tf_latentflow.training import schedules
from tf_latentflow.model import LatentFlowVAE
from tf_latentflow.training import inputs, resume, state
from tf_latentflow.training import steps as steps_lib
from tf_latentflow.training import trainer as trainer_lib
from tf_latentflow.training.distribution import clip_across_replicas, global_norm_across_replicas
from tf_latentflow.training.config import default_config
from tf_latentflow.training.step_statistics import StepStatistics
from training_testing import TINY, synthetic_music_bundle, tiny_config


def synthetic_bundle(seed=0):
    return synthetic_music_bundle(seed, sizes=(12, 6, 6))


config_for = tiny_config


def weights(trainer):
    return [v.numpy() for v in trainer.model.trainable_variables]


def interrupt_after(trainer, calls):
    """Make `trainer` request an interrupt (what SIGINT calls) right after its training
    step has been called `calls` times."""
    make_step, count = trainer._make_train_step, []

    def make_interrupting_step(element_spec):
        step = make_step(element_spec)

        def interrupting_step(*args):
            out = step(*args)
            count.append(1)
            if len(count) == calls:
                trainer.request_interrupt()
            return out
        return interrupting_step

    trainer._make_train_step = make_interrupting_step


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """Three epochs without interruption, then evaluation (shared by the tests below)."""
    tmp_path = tmp_path_factory.mktemp("runs")
    trainer = trainer_lib.Trainer(config_for(tmp_path, "straight"), bundle=synthetic_bundle(),
                                  log=lambda *_: None)
    trainer.fit()
    return tmp_path, trainer, trainer.evaluate()


def test_results_and_config_files(straight_run):
    tmp_path, _, results = straight_run
    saved = json.loads((tmp_path / "straight" / "results.json").read_text())
    assert saved["test"] == results["test"]
    for split in ("validation", "test"):
        assert saved[split]["unit"] == "nats per time step"
        assert np.isfinite(saved[split]["nll"]) and saved[split]["sequences"] == 6
    assert saved["epochs_trained"] == 3 and saved["dataset"] == "jsb_chorales"
    config = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert config["model"] == "af-scf" and config["model_config"]["prior"] == "af-scf"
    assert (tmp_path / "straight" / "checkpoints" / "best" / "checkpoint").exists()
    # the run (3 epochs, all their time) and the evaluated checkpoint (saved as ckpt-<epochs>)
    history = [json.loads(line) for line in
               (tmp_path / "straight" / "history.jsonl").read_text().splitlines()]
    best = int(saved["checkpoint"].rsplit("-", 1)[1])
    assert saved["best_epoch"] == best and 1 <= best <= 3
    assert saved["wall_seconds"] == pytest.approx(sum(h["epoch_seconds"] for h in history))
    assert saved["best_wall_seconds"] == pytest.approx(
        sum(h["epoch_seconds"] for h in history[:best]))
    # nothing about where the run was: results.json is published as it is
    for text in ((tmp_path / "straight" / "results.json").read_text(),
                 (tmp_path / "straight" / "config.json").read_text()):
        assert str(tmp_path) not in text
        assert not {"output_dir", "data_dir", "prepared_dir"} & set(json.loads(text).get("config", json.loads(text)))


def test_evaluation_steps_are_traced_once_per_run(straight_run):
    # Three epochs of validation at three different KL weights, then validation and test
    # NLL: one trace each (a per-epoch trace costs seconds to minutes on the paper's sizes).
    _, trainer, _ = straight_run
    assert trainer.steps._loss_sums_step.experimental_get_tracing_count() == 1
    assert [f.experimental_get_tracing_count() for f in trainer.steps._nll_steps.values()] == [1]


def test_the_nll_chunk_is_bounded_by_the_budget_and_by_ten_samples():
    assert steps_lib.nll_chunk(50, 16, 160, 65536) == 10  # JSB: the chunk of every earlier result
    assert steps_lib.nll_chunk(50, 16, 1480, 65536) == 2  # Nottingham's longest validation batch
    assert steps_lib.nll_chunk(50, 16, 5000, 65536) == 1  # never below one sample
    assert steps_lib.nll_chunk(4, 1, 4000, 65536) == 4  # Piano-midi / MuseData: 4 samples, batch 1
    assert steps_lib.nll_chunk(3, 4, 8, 10**9) == 3  # never above K


def test_the_evaluation_uses_the_budgeted_chunk_and_its_seeds(straight_run):
    # Independent value: LatentFlowVAE.nll called directly on each test batch with the
    # chunk the budget gives (here 1) and the evaluation's per-batch seed.
    import dataclasses
    _, trainer, _ = straight_run
    config = dataclasses.replace(trainer.config, nll_chunk_budget=1)
    steps = steps_lib.TrainSteps(config, trainer.model, trainer.optimizer, trainer.strategy)
    dataset = inputs.batches(config, trainer.bundle, "test")
    sums = steps.nll_sums(dataset, 3)
    assert list(steps._nll_steps) == [(3, 1)]
    expected = 0.0
    for i, batch in enumerate(dataset):
        out = trainer.model.nll(batch["x"], batch["lengths"], num_samples=3,
                                seed=steps_lib.step_seed(config, 2 * 10**9 + i), chunk_size=1)
        expected += float(np.sum(out["nll"].numpy() * batch["weight"].numpy()))
    assert sums[0] == pytest.approx(expected, rel=1e-5)
    chunked = steps_lib.TrainSteps(trainer.config, trainer.model, trainer.optimizer, trainer.strategy)
    assert chunked.nll_sums(dataset, 3)[0] != pytest.approx(expected, rel=1e-5)  # chunk 3: other draws


def test_nan_loss_stops_without_touching_the_checkpoints(tmp_path, monkeypatch, straight_run):
    bundle = synthetic_bundle()
    run_dir = tmp_path / "nan"
    shutil.copytree(straight_run[0] / "straight", run_dir)
    before = {p.name: p.read_bytes() for p in (run_dir / "checkpoints" / "best").iterdir()}
    real = LatentFlowVAE.loss_terms

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        return {"loss": terms["loss"] * np.nan, "kl": terms["kl"]}

    monkeypatch.setattr(LatentFlowVAE, "loss_terms", poisoned)
    diverging = trainer_lib.Trainer(config_for(tmp_path, "nan", epochs=5), bundle=bundle,
                                    log=lambda *_: None)
    with pytest.raises(trainer_lib.TrainingDiverged, match="non-finite training loss"):
        diverging.fit()
    after = {p.name: p.read_bytes() for p in (run_dir / "checkpoints" / "best").iterdir()}
    assert after == before
    assert len((run_dir / "history.jsonl").read_text().splitlines()) == 3


def checkpoint_files(run_dir):
    return {str(p.relative_to(run_dir)): p.read_bytes()
            for p in sorted((run_dir / "checkpoints").rglob("*")) if p.is_file()}


@pytest.mark.parametrize("measured", [True, False], ids=["norm-measured", "norm-not-measured"])
def test_a_nan_gradient_with_finite_losses_is_never_saved(tmp_path, monkeypatch, measured):
    """One update per epoch (accumulation over its 3 steps): the losses are finite, the
    gradient is NaN, so the update at the epoch's last step makes the weights NaN and no
    later loss of the epoch can catch it. The run stops at that update's norm (measured)
    or before the epoch's checkpoints (not measured, as without clipping on several
    replicas); the checkpoints and history of the epoch before are untouched."""
    bundle = synthetic_bundle()
    config = lambda epochs: config_for(tmp_path, "nan-grad", grad_accum=3, epochs=epochs)
    trainer_lib.Trainer(config(1), bundle=bundle, log=lambda *_: None).fit()  # one clean epoch
    run_dir = tmp_path / "nan-grad"
    before = checkpoint_files(run_dir)
    assert any("latest" in name for name in before)
    real = LatentFlowVAE.loss_terms

    @tf.custom_gradient
    def nan_gradient(x):
        return tf.identity(x), lambda dy: dy * np.nan

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        return {"loss": nan_gradient(terms["loss"]), "kl": terms["kl"]}

    monkeypatch.setattr(LatentFlowVAE, "loss_terms", poisoned)
    diverging = trainer_lib.Trainer(config(2), bundle=bundle, log=lambda *_: None)
    assert diverging.steps.measures_grad_norm  # one device
    diverging.steps.measures_grad_norm = measured  # read when the step is traced
    match = "non-finite gradient norm" if measured else "non-finite weights after the training pass of epoch 1"
    with pytest.raises(trainer_lib.TrainingDiverged, match=match):
        diverging.fit()
    assert not all(np.all(np.isfinite(w)) for w in weights(diverging))  # the update did happen
    assert checkpoint_files(run_dir) == before
    assert len((run_dir / "history.jsonl").read_text().splitlines()) == 1


def test_finite_weights_pass_the_check_and_a_nan_weight_is_named(straight_run):
    _, trainer, _ = straight_run
    trainer.check_finite_weights("now")  # a trained run: finite
    variable = trainer.model.weights[0]
    kept = variable.numpy()
    try:
        variable.assign(np.where(np.arange(kept.size).reshape(kept.shape) == 0, np.inf, kept))
        with pytest.raises(trainer_lib.TrainingDiverged, match=f"non-finite weights now .*{variable.path}"):
            trainer.check_finite_weights("now")
    finally:
        variable.assign(kept)


@pytest.mark.slow  # the default suite's 10-minute budget
def test_interrupted_run_resumes_as_if_never_interrupted(tmp_path, straight_run):
    """Ctrl-C inside epoch 1 saves a checkpoint; the same command resumes at the next step
    and ends with the weights and history of the uninterrupted run (same seed)."""
    straight_dir, straight, _ = straight_run
    bundle = synthetic_bundle()
    first = trainer_lib.Trainer(config_for(tmp_path, "interrupted"), bundle=bundle, log=lambda *_: None)
    interrupt_after(first, 4)  # epoch 1 (3 steps per epoch), after its first step
    with pytest.raises(trainer_lib.Interrupted, match="epoch 1, step 1 of 3"):
        first.fit()
    assert int(first.state.global_step.numpy()) == 4 and int(first.position.epoch_step.numpy()) == 1

    resumed = trainer_lib.Trainer(config_for(tmp_path, "interrupted"), bundle=bundle, log=lambda *_: None)
    resumed.fit()  # continues epoch 1 at its second step
    assert int(resumed.state.global_step.numpy()) == 9 and int(resumed.state.epoch.numpy()) == 3
    # Equal up to float non-determinism of threaded CPU kernels (~1e-5); a different
    # data order, dropout mask or sampling seed after the resume would move them by ~1e-2.
    for a, b in zip(weights(straight), weights(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)
    history = [json.loads(line) for line in
               (tmp_path / "interrupted" / "history.jsonl").read_text().splitlines()]
    assert all(h["epoch_seconds"] > 0 for h in history)
    reference = [json.loads(line) for line in
                 (straight_dir / "straight" / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1, 2]
    for a, b in zip(history, reference):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["validation_loss"] == pytest.approx(b["validation_loss"], rel=1e-4)
        # the step statistics of epoch 1 include its step before the interrupt (checkpointed)
        assert a["updates"] == b["updates"] == 3
        assert a["train_loss_max_step"] == b["train_loss_max_step"]
        for key in ("train_loss_max", "grad_norm_max", "grad_norm_mean"):
            assert a[key] == pytest.approx(b[key], rel=1e-4)


@pytest.mark.slow  # the default suite's 10-minute budget
def test_an_epoch_recorded_but_not_checkpointed_is_trained_again_and_recorded_once(tmp_path, monkeypatch,
                                                                                   straight_run):
    """A process killed after epoch 1's history record and before its checkpoint: the
    resume drops that record, trains epoch 1 again and ends as the uninterrupted run."""
    bundle = synthetic_bundle()
    killed = trainer_lib.Trainer(config_for(tmp_path, "killed"), bundle=bundle, log=lambda *_: None)
    real, calls = killed.checkpoints.save_latest, []

    def dies_at_epoch_1():
        calls.append(len(calls))
        if len(calls) == 2:
            raise KeyboardInterrupt  # what a kill there leaves: the record, no checkpoint
        real()

    monkeypatch.setattr(killed.checkpoints, "save_latest", dies_at_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    history = tmp_path / "killed" / "history.jsonl"
    assert [json.loads(line)["epoch"] for line in history.read_text().splitlines()] == [0, 1]
    resumed = trainer_lib.Trainer(config_for(tmp_path, "killed"), bundle=bundle, log=lambda *_: None)
    resumed.fit()
    assert [json.loads(line)["epoch"] for line in history.read_text().splitlines()] == [0, 1, 2]
    for a, b in zip(weights(straight_run[1]), weights(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


def test_a_run_with_other_settings_is_refused_unless_forced_new(tmp_path, straight_run):
    run_dir = tmp_path / "other"
    shutil.copytree(straight_run[0] / "straight", run_dir)
    bundle = synthetic_bundle()
    with pytest.raises(trainer_lib.ConfigMismatch, match=r"batch_size 4 \(saved\) vs 2 \(now\).*--force-new"):
        trainer_lib.Trainer(config_for(tmp_path, "other", batch_size=2), bundle=bundle, log=lambda *_: None)
    messages = []  # more epochs and other evaluation settings resume
    trainer_lib.Trainer(config_for(tmp_path, "other", epochs=5, nll_samples=7), bundle=bundle,
                        log=messages.append)
    assert messages == ["resuming with changed settings: epochs 3 -> 5, nll_samples 3 -> 7"]
    fresh = trainer_lib.Trainer(config_for(tmp_path, "other", batch_size=2), bundle=bundle,
                                log=lambda *_: None, force_new=True)
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "history.jsonl").exists()
    assert not fresh.restore_latest()


def test_checkpoints_without_the_epoch_position_still_resume(tmp_path, straight_run):
    # Written as before EpochPosition existed (no "position" object): an epoch boundary.
    bundle = synthetic_bundle()
    straight = straight_run[1]
    run_dir = tmp_path / "old"
    shutil.copytree(straight_run[0] / "straight", run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "latest")
    tf.train.CheckpointManager(tf.train.Checkpoint(**straight.checkpoints.parts),
                               run_dir / "checkpoints" / "latest", max_to_keep=1).save(checkpoint_number=9)
    resumed = trainer_lib.Trainer(config_for(tmp_path, "old"), bundle=bundle, log=lambda *_: None)
    assert resumed.restore_latest()
    assert int(resumed.state.epoch.numpy()) == 3 and int(resumed.position.epoch_step.numpy()) == 0
    assert resumed.checkpoints.statistics.read() == StepStatistics()  # nor the step statistics: empty
    for a, b in zip(weights(straight), weights(resumed)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # the default suite's 10-minute budget
def test_jit_compiled_steps_train_like_the_graph_steps(tmp_path):
    # The LSTM baseline without dropout draws no random numbers, so the XLA run and the
    # graph run must agree up to float rounding (XLA's random streams differ from TF's
    # kernels, so models with dropout or sampling agree only in distribution). Batch 5 over
    # 12 sequences: the XLA run's last batch of each epoch holds 3 weight-0 filler rows,
    # which must change nothing.
    runs = {}
    for jit in (False, True):
        config = default_config("jsb", "lstm", str(tmp_path / f"jit_{jit}"),
                                **dict(TINY, epochs=2, batch_size=5, seed=3, baseline_dropout=0.0,
                                       jit_compile=jit, batching="bucketed"))  # the 16-step grid
        trainer = trainer_lib.Trainer(config, bundle=synthetic_bundle(), log=lambda *_: None)
        trainer.fit()
        history = [json.loads(line) for line in
                   (tmp_path / f"jit_{jit}" / "history.jsonl").read_text().splitlines()]
        train = list(inputs.batches(config, trainer.bundle, "train", epoch=0))
        runs[jit] = (weights(trainer), history, trainer.evaluate()["test"]["nll"],
                     [b["x"].shape[1] for b in train], [b["x"].shape[0] for b in train])
    assert all(t % inputs.XLA_TIME_MULTIPLE == 0 for t in runs[True][3])
    assert runs[False][3] != runs[True][3]  # without XLA: padded to the longest sequence only
    assert runs[True][4] == [5, 5, 5] and runs[False][4] == [5, 5, 2]  # rows: filled with XLA
    for a, b in zip(runs[False][0], runs[True][0]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(runs[False][1], runs[True][1]):
        np.testing.assert_allclose([a["train_loss"], a["validation_loss"]],
                                   [b["train_loss"], b["validation_loss"]], rtol=1e-5)
    np.testing.assert_allclose(runs[False][2], runs[True][2], rtol=1e-5)


@pytest.mark.slow  # the default suite's 10-minute budget
@pytest.mark.parametrize("batching,pad_to_bucket", [("bucketed", False), ("bucketed", True), ("pooled", False)])
def test_precompile_covers_every_training_shape_and_changes_nothing(tmp_path, batching, pad_to_bucket):
    """With jit_compile, precompile() compiles every shape of data.batch_shapes before the
    first step, without moving a weight, an optimizer slot or the step counter; every batch
    of several epochs then has one of those shapes (so no compile happens after it). With
    pad_to_bucket the shapes are one per bucket (2 here); pooled, one per length-grid point (3)."""
    config = default_config("jsb", "lstm", str(tmp_path / "pre"),
                            **dict(TINY, epochs=4, batch_size=5, num_buckets=2, jit_compile=True,
                                   pad_to_bucket=pad_to_bucket, batching=batching, length_grid_size=3))
    bundle = synthetic_music_bundle(sizes=(12, 6, 6), max_len=40)  # lengths 3..39: 3 shapes
    trainer = trainer_lib.Trainer(config, bundle=bundle, log=lambda *_: None)
    shapes = set(D.batch_shapes(trainer.bundle.lengths["train"],
                                inputs.batch_config(config, trainer.bundle, epoch=0)))
    met, make = [], trainer._make_train_step

    def recording(element_spec):
        step = make(element_spec)

        def run(batch, *args):
            met.append(tuple(batch["x"].shape[:2]))
            return step(batch, *args)
        return run

    trainer._make_train_step = recording
    trainer._train_step = recording(inputs.batches(config, trainer.bundle, "train", epoch=0).element_spec)
    before = [v.numpy().copy() for v in trainer.model.variables + trainer.optimizer.variables]
    assert trainer.precompile() == len(shapes) > 1
    after = [v.numpy() for v in trainer.model.variables + trainer.optimizer.variables]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    trainer.fit()
    steps = len(list(inputs.batches(config, trainer.bundle, "train", epoch=0)))
    assert set(met) <= shapes and len(met) == 4 * steps
    if pad_to_bucket:
        assert len(shapes) == 2
    if batching == "pooled":
        assert {t for _, t in shapes} == set(D.length_grid(trainer.bundle.lengths["train"], 3))
        assert len(shapes) == 3


@pytest.mark.slow  # ~1 min: one XLA compile per batch shape of a flow model
def test_jit_compiled_flow_model_trains_and_evaluates(tmp_path):
    trainer = trainer_lib.Trainer(config_for(tmp_path, "xla", epochs=2, jit_compile=True),
                                  bundle=synthetic_bundle(), log=lambda *_: None)
    trainer.fit()
    results = trainer.evaluate()
    history = [json.loads(line) for line in (tmp_path / "xla" / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2 and all(np.isfinite(h["train_loss"]) for h in history)
    assert np.isfinite(results["test"]["nll"]) and results["test"]["nll"] > 0
    assert results["config"]["jit_compile"] is True


def test_the_global_norm_is_that_of_every_gradient_together_unscaled():
    g = [tf.constant([3.0, 0.0]), None, tf.constant([[4.0], [12.0]])]  # sqrt(9 + 16 + 144) = 13
    assert float(global_norm_across_replicas(g)) == pytest.approx(13.0, rel=1e-6)
    scaled = [None if t is None else t * 1024.0 for t in g]
    assert float(global_norm_across_replicas(scaled, 1024.0)) == pytest.approx(13.0, rel=1e-6)
    given = clip_across_replicas(g, 0.25, norm=tf.constant(26.0))  # the norm passed in is the one used
    np.testing.assert_allclose(given[0].numpy(), [3.0 * 0.25 / 26.0, 0.0], rtol=1e-6)


def test_clipping_scales_to_the_global_norm_and_keeps_non_finite():
    g = [tf.constant([3.0, 0.0]), None, tf.constant([[4.0]])]  # global norm 5
    clipped = clip_across_replicas(g, 0.25)
    assert clipped[1] is None
    np.testing.assert_allclose(clipped[0].numpy(), [0.15, 0.0], rtol=1e-6)
    np.testing.assert_allclose(clipped[2].numpy(), [[0.2]], rtol=1e-6)
    small = clip_across_replicas(g, 10.0)  # below the threshold: unchanged
    np.testing.assert_allclose(small[0].numpy(), [3.0, 0.0])
    # Loss-scaled gradients (x 1024): the norm is measured unscaled, the scale is kept.
    scaled = clip_across_replicas([t * 1024.0 for t in (g[0], g[2])], 0.25, 1024.0)
    np.testing.assert_allclose(scaled[0].numpy(), [0.15 * 1024, 0.0], rtol=1e-6)
    bad = clip_across_replicas([tf.constant([np.inf, 1.0])], 0.25)
    assert not np.isfinite(bad[0].numpy()).all()
    assert not hasattr(keras.optimizers.Adam(), "dynamic_scale")  # the step's unscaling test


def test_settings_added_after_a_run_was_saved_count_as_their_defaults(tmp_path, straight_run):
    run_dir = tmp_path / "older"
    shutil.copytree(straight_run[0] / "straight", run_dir)
    saved = json.loads((run_dir / "config.json").read_text())
    del saved["reset_optimizer_on_decay"]  # a config.json written before the setting existed
    (run_dir / "config.json").write_text(json.dumps(saved))
    messages = []
    trainer = trainer_lib.Trainer(config_for(tmp_path, "older"), bundle=synthetic_bundle(),
                                  log=messages.append)
    assert resume.changed_settings(trainer.run_dir, trainer.config) == {} and messages == []
    with pytest.raises(trainer_lib.ConfigMismatch, match=r"reset_optimizer_on_decay False \(saved\)"):
        trainer_lib.Trainer(config_for(tmp_path, "older", reset_optimizer_on_decay=True),
                            bundle=synthetic_bundle(), log=lambda *_: None)


def test_a_run_saved_before_the_kl_start_weight_existed_resumes_only_as_it_trained(tmp_path,
                                                                                   straight_run):
    """Before kl_start_weight, kl_schedule and adam_epsilon were settings the code used 0,
    the early ramp and Keras's 1e-7: a config.json without them means those, whatever
    today's defaults are."""
    run_dir = tmp_path / "v1"
    shutil.copytree(straight_run[0] / "straight", run_dir)
    saved = json.loads((run_dir / "config.json").read_text())
    for name in ("kl_start_weight", "kl_schedule", "adam_epsilon"):
        del saved[name]
    (run_dir / "config.json").write_text(json.dumps(saved))
    as_trained = dict(kl_start_weight=0.0, kl_schedule="early", adam_epsilon=1e-7)
    trainer = trainer_lib.Trainer(config_for(tmp_path, "v1", **as_trained),
                                  bundle=synthetic_bundle(), log=lambda *_: None)
    assert resume.changed_settings(trainer.run_dir, trainer.config) == {}
    with pytest.raises(trainer_lib.ConfigMismatch, match=r"kl_start_weight 0.0 \(saved\) vs 1e-05"):
        trainer_lib.Trainer(config_for(tmp_path, "v1", **dict(as_trained, kl_start_weight=1e-5)),
                            bundle=synthetic_bundle(), log=lambda *_: None)


@pytest.mark.slow  # the default suite's 10-minute budget
@pytest.mark.parametrize("shape", ["reference", "early"])
def test_the_logged_kl_weights_follow_the_configured_schedule(tmp_path, shape):
    config = config_for(tmp_path, shape, epochs=4, kl_zero_epochs=1, kl_ramp_epochs=2,
                        kl_start_weight=1e-5, kl_schedule=shape, adam_epsilon=1e-8)
    trainer = trainer_lib.Trainer(config, bundle=synthetic_bundle(), log=lambda *_: None)
    assert trainer.optimizer.epsilon == 1e-8
    trainer.fit()
    history = [json.loads(line) for line in (tmp_path / shape / "history.jsonl").read_text().splitlines()]
    # reference: 1e-5, 1e-5, (1e-5 + 1) / 2, 1 and the plateau rule from epoch 3 on (3 > 1 + 2 is
    # false, so never within 4 epochs); early: 1e-5, (1e-5 + 1) / 2, 1, 1, plateau from epoch 2.
    expected = {"reference": [1e-5, 1e-5, 0.500005, 1.0], "early": [1e-5, 0.500005, 1.0, 1.0]}[shape]
    assert [h["kl_weight"] for h in history] == pytest.approx(expected)
    plateau_epochs = [h["epoch"] for h in history if "improved" in h]
    assert plateau_epochs == {"reference": [], "early": [2, 3]}[shape]


@pytest.mark.parametrize("loss_scaled", [False, True])
def test_a_reset_optimizer_continues_as_a_newly_made_one(loss_scaled):
    def make():
        adam = keras.optimizers.Adam(learning_rate=0.01)
        return keras.optimizers.LossScaleOptimizer(adam) if loss_scaled else adam

    def one_update(optimizer, variable, gradient):
        before = variable.numpy().copy()
        optimizer.apply_gradients([(gradient, variable)])
        return variable.numpy() - before

    rng = np.random.default_rng(0)
    used, fresh = keras.Variable(rng.normal(size=3).astype(np.float32)), keras.Variable(np.zeros(3, np.float32))
    optimizer, new = make(), make()
    optimizer.build([used])
    new.build([fresh])
    for _ in range(5):
        one_update(optimizer, used, tf.constant(rng.normal(size=3).astype(np.float32)))
    optimizer.learning_rate = 0.0025
    new.learning_rate = 0.0025
    state.reset_optimizer_state(optimizer)
    gradient = tf.constant(rng.normal(size=3).astype(np.float32))
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    assert int(inner.iterations.numpy()) == 0
    assert float(optimizer.learning_rate.numpy()) == pytest.approx(0.0025)
    if loss_scaled:
        scale = float(optimizer.dynamic_scale.numpy())
        gradient_used, gradient_new = gradient * scale, gradient * float(new.dynamic_scale.numpy())
    else:
        gradient_used = gradient_new = gradient
    step = one_update(optimizer, used, gradient_used)
    # A new Adam's first update: lr * m_hat / (sqrt(v_hat) + eps) = lr * sign(g) (up to eps).
    np.testing.assert_allclose(step, one_update(new, fresh, gradient_new), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(np.abs(step), 0.0025, rtol=1e-3)


@pytest.mark.slow  # the default suite's 10-minute budget
def test_learning_rate_decays_reset_the_optimizer_when_asked(tmp_path, monkeypatch):
    # Every epoch after the ramp decays (plateau rule replaced): with the reset, the
    # optimizer's step count restarts at each decay, the last one after the final epoch.
    def always_decay(state, validation_loss, patience, decay):
        return schedules.Plateau(best=min(state.best, validation_loss), bad_epochs=0,
                                 learning_rate=state.learning_rate / decay, decayed=True)

    monkeypatch.setattr(schedules, "plateau_update", always_decay)
    counts = {}
    for reset in (False, True):
        trainer = trainer_lib.Trainer(config_for(tmp_path, f"reset_{reset}", reset_optimizer_on_decay=reset),
                                      bundle=synthetic_bundle(), log=lambda *_: None)
        trainer.fit()
        history = [json.loads(line) for line in
                   (tmp_path / f"reset_{reset}" / "history.jsonl").read_text().splitlines()]
        assert [h.get("lr_decayed") for h in history] == [None, True, True]
        assert trainer.optimizer.learning_rate.numpy() == pytest.approx(1e-3 / 16)
        counts[reset] = int(trainer.optimizer.iterations.numpy())
    steps_per_epoch = 3  # 12 training sequences, batch 4
    assert counts == {False: 3 * steps_per_epoch, True: 0}


@pytest.mark.slow  # the default suite's 10-minute budget
def test_the_logged_training_loss_is_the_mean_of_the_steps_taken(tmp_path, monkeypatch):
    """--max-steps-per-epoch 2: train_loss is the mean of those 2 steps' losses (was / 3)."""
    losses = []
    make = trainer_lib.Trainer._make_train_step

    def recording(self, element_spec):
        step = make(self, element_spec)

        def run(*args):
            loss, kl, norm = step(*args)
            losses.append(float(loss))
            return loss, kl, norm
        return run

    monkeypatch.setattr(trainer_lib.Trainer, "_make_train_step", recording)
    trainer = trainer_lib.Trainer(config_for(tmp_path, "capped", epochs=1, max_steps_per_epoch=2),
                                  bundle=synthetic_bundle(), log=lambda *_: None)
    trainer.fit()
    record = json.loads((tmp_path / "capped" / "history.jsonl").read_text())
    assert len(losses) == 2
    assert record["train_loss"] == pytest.approx(np.mean(losses), rel=1e-6)


@pytest.mark.parametrize("clip", [0.5, 1e6])  # the tiny model's norms are ~3: all clipped, none
def test_the_epoch_step_statistics_are_those_of_the_steps_and_updates_taken(tmp_path, clip):
    """Per-epoch max batch loss and pre-clip gradient norms, with accumulation over 2 batches.

    Independent value for the norm: plain SGD moves the weights by lr * min(||g||, clip),
    so the weight change of each update over lr is the norm the step reported (clipped
    or not); an accumulating step moves nothing and is not an update."""
    lr = 0.05
    config = tiny_config(tmp_path, "statistics", epochs=2, batch_size=2, grad_accum=2, max_steps_per_epoch=3,
                         optimizer="sgd", learning_rate=lr, clip_norm=clip)
    trainer = trainer_lib.Trainer(config, bundle=synthetic_bundle(), log=lambda *_: None)
    calls, make = [], trainer._make_train_step

    def recording(element_spec):
        step = make(element_spec)

        def run(batch, kl_weight, seed, group):
            before = weights(trainer)
            loss, kl, norm = step(batch, kl_weight, seed, group)
            moved = np.sqrt(sum(np.sum((a - b).astype(np.float64) ** 2)
                                for a, b in zip(weights(trainer), before)))
            calls.append((float(loss), float(norm), group, moved))
            return loss, kl, norm
        return run

    trainer._make_train_step = recording
    trainer.fit()
    history = [json.loads(line) for line in
               (tmp_path / "statistics" / "history.jsonl").read_text().splitlines()]
    assert [c[2] for c in calls] == [0, 2, 1] * 2  # 3 steps: a group of 2, then the last alone
    for loss, norm, group, moved in calls:
        if group:
            assert moved / lr == pytest.approx(min(norm, clip), rel=1e-3)
        else:
            assert moved == 0.0
    for epoch, record in enumerate(history):
        steps = calls[3 * epoch:3 * epoch + 3]
        norms = [c[1] for c in steps if c[2]]
        losses = [c[0] for c in steps]
        assert record["train_loss_max"] == pytest.approx(max(losses), rel=1e-6)
        assert record["train_loss_max_step"] == int(np.argmax(losses))
        assert record["updates"] == 2 and record["nonfinite_grad_norms"] == 0
        assert record["grad_norm_max"] == pytest.approx(max(norms), rel=1e-6)
        assert record["grad_norm_mean"] == pytest.approx(np.mean(norms), rel=1e-6)
        assert record["clipped_updates"] == sum(n > clip for n in norms) == (2 if clip < 1 else 0)


def test_force_new_deletes_nothing_before_the_data_and_model_are_known_good(tmp_path, straight_run):
    from tf_latentflow.data import DataError

    run_dir = tmp_path / "kept"
    shutil.copytree(straight_run[0] / "straight", run_dir)
    before = sorted(p.name for p in run_dir.iterdir())
    config = config_for(tmp_path, "kept", data_dir=str(tmp_path / "no-such-data"),
                        prepared_dir=str(tmp_path / "prepared"))
    with pytest.raises(DataError):
        trainer_lib.Trainer(config, log=lambda *_: None, force_new=True)
    assert sorted(p.name for p in run_dir.iterdir()) == before
    assert (run_dir / "checkpoints" / "latest" / "checkpoint").exists()


@pytest.mark.slow  # the default suite's 10-minute budget
def test_a_run_with_checkpoints_from_before_weights_were_keyed_by_name_resumes(tmp_path,
                                                                              straight_run):
    """An old run directory: its latest checkpoint lists the weights in creation order."""
    from tf_latentflow.runs.checkpoints import checkpoint_layout, checkpoint_objects

    run_dir = tmp_path / "listed"
    shutil.copytree(straight_run[0] / "straight", run_dir)
    old = trainer_lib.Trainer(config_for(tmp_path, "listed"), bundle=synthetic_bundle(),
                              log=lambda *_: None)
    assert old.restore_latest()
    expected = weights(old)
    parts = {k: v for k, v in old.checkpoints.parts.items() if k not in ("model", "model_variables")}
    legacy = tf.train.Checkpoint(**parts, **checkpoint_objects(old.model, "legacy"),
                                 position=old.position)
    for kind in ("latest", "best"):
        shutil.rmtree(run_dir / "checkpoints" / kind)
        path = tf.train.CheckpointManager(legacy, run_dir / "checkpoints" / kind,
                                          max_to_keep=1).save(checkpoint_number=99)
        assert checkpoint_layout(path) == "legacy"
    messages = []
    resumed = trainer_lib.Trainer(config_for(tmp_path, "listed", epochs=4), bundle=synthetic_bundle(),
                                  log=messages.append)
    assert resumed.restore_latest()
    assert any("read in creation order" in m for m in messages)
    for got, want in zip(weights(resumed), expected):
        np.testing.assert_array_equal(got, want)
    resumed.fit()  # one more epoch, saved in the named layout
    assert checkpoint_layout(resumed.checkpoints.latest.latest_checkpoint) == "named"
    assert np.isfinite(resumed.evaluate()["test"]["nll"])


def test_results_of_an_evaluate_only_call_describe_the_training_and_keep_the_call_apart(tmp_path, straight_run):
    run_dir = tmp_path / "again"
    shutil.copytree(straight_run[0] / "straight", run_dir)
    trained = straight_run[2]["config"]
    assert "evaluation_config" not in straight_run[2] and trained["evaluate_only"] is False
    again = config_for(tmp_path, "again", evaluate_only=True, epochs=100, nll_samples=2)
    results = trainer_lib.Trainer(again, bundle=synthetic_bundle(), log=lambda *_: None).evaluate()
    assert results["config"] == trained  # epochs 3 and the training's nll_samples, not this call's
    assert results["evaluation_config"] == {"evaluate_only": True, "epochs": 100, "nll_samples": 2}
    assert results["test"]["num_samples"] == 2


def test_evaluate_only_refuses_a_checkpoint_that_does_not_match_the_model(tmp_path, straight_run):
    from tf_latentflow.runs.checkpoints import IncompleteCheckpointError

    run_dir = tmp_path / "other_model"
    shutil.copytree(straight_run[0] / "straight", run_dir)
    wider = config_for(tmp_path, "other_model", flow_hidden_units=(12,), evaluate_only=True)
    (run_dir / "config.json").unlink()  # as if the settings had been edited by hand
    with pytest.raises(IncompleteCheckpointError, match="shapes differ"):
        trainer_lib.Trainer(wider, bundle=synthetic_bundle(), log=lambda *_: None).evaluate()


def synthetic_text_bundle(seed=0, sizes=(12, 6, 6), vocabulary=("<pad>", "a", "b", "c", " ")):
    """Random sentences of token ids 1..V-1, lengths 2..8 (never empty, as text)."""
    rng = np.random.default_rng(seed)
    splits, lengths = {}, {}
    for name, n in zip(("train", "validation", "test"), sizes):
        sizes_ = rng.integers(2, 9, size=n)
        rows = [rng.integers(1, len(vocabulary), size=t).astype(np.int32) for t in sizes_]
        splits[name] = tf.data.Dataset.from_generator(
            lambda rows=rows: ({"tokens": r, "length": np.int32(len(r))} for r in rows),
            output_signature={"tokens": tf.TensorSpec([None], tf.int32),
                              "length": tf.TensorSpec([], tf.int32)})
        lengths[name] = sizes_
    return inputs.DataBundle(splits=splits, lengths=lengths, vocabulary=vocabulary)


def test_text_lstm_trains_with_sgd_and_reports_exact_bits_per_character(tmp_path):
    bundle = synthetic_text_bundle()
    config = default_config("ptb", "lstm", str(tmp_path / "text"),
                            **dict(TINY, epochs=3, batch_size=4, optimizer="sgd", learning_rate=1.0, seed=3))
    trainer = trainer_lib.Trainer(config, bundle=bundle, log=lambda *_: None)
    assert isinstance(trainer.optimizer, keras.optimizers.SGD)
    trainer.fit()
    history = [json.loads(line) for line in (tmp_path / "text" / "history.jsonl").read_text().splitlines()]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    results = trainer.evaluate()
    # independent value: the exact NLL of every test sentence, over sum (T + 1), in bits
    nll, steps = 0.0, 0
    for example in bundle.splits["test"]:
        tokens, length = example["tokens"].numpy()[None], example["length"].numpy()
        nll += float(trainer.model.nll(tokens, np.array([length], np.int32))[0])
        steps += int(length) + 1
    assert results["test"]["unit"] == "bits per character"
    assert results["test"]["nll"] == pytest.approx(nll / steps / np.log(2.0), rel=1e-5)


def test_a_run_trained_in_another_precision_is_refused(tmp_path, straight_run):
    run_dir = tmp_path / "gpu_run"
    shutil.copytree(straight_run[0] / "straight", run_dir)
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["precision_policy"] == "float32"
    saved["precision_policy"] = "mixed_float16"  # as a run started on a GPU with --mixed-precision auto
    saved["mixed_precision"] = "auto"
    (run_dir / "config.json").write_text(json.dumps(saved))
    with pytest.raises(trainer_lib.ConfigMismatch, match="trained with the mixed_float16 policy"):
        trainer_lib.Trainer(config_for(tmp_path, "gpu_run", mixed_precision="auto"),
                            bundle=synthetic_bundle(), log=lambda *_: None)


def _lstm_run(tmp_path, name, **fields):
    config = default_config("jsb", "lstm", str(tmp_path / name),
                            **dict(TINY, epochs=2, seed=3, baseline_dropout=0.0,
                                   batching="bucketed", **fields))  # one sequence order for every batch size
    trainer = trainer_lib.Trainer(config, bundle=synthetic_bundle(), log=lambda *_: None)
    trainer.fit()
    history = [json.loads(line) for line in (tmp_path / name / "history.jsonl").read_text().splitlines()]
    return trainer, history


@pytest.mark.slow  # several full runs; the suite's time budget
def test_gradient_accumulation_trains_like_the_larger_batch(tmp_path):
    """Batch 2 with --grad-accum 2 (and batch 2 x 4, whose last group of each epoch has 2
    batches) updates with the mean of the batches' mean gradients: the updates of batch 4
    (and 8) over the same data order. The LSTM baseline without dropout draws nothing."""
    for small, large in (((2, 2), 4), ((2, 4), 8)):
        accumulated, acc_history = _lstm_run(tmp_path, f"acc{small}", batch_size=small[0],
                                             grad_accum=small[1])
        plain, plain_history = _lstm_run(tmp_path, f"plain{large}", batch_size=large)
        assert int(accumulated.optimizer.iterations.numpy()) == int(plain.optimizer.iterations.numpy())
        for a, b in zip(weights(accumulated), weights(plain)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        for a, b in zip(acc_history, plain_history):
            assert a["validation_loss"] == pytest.approx(b["validation_loss"], rel=1e-5)
        assert all(v.numpy().max() == 0 for v in accumulated.accumulator.ordered)  # applied
    # and it is not a no-op: one update per batch moves the weights elsewhere
    unaccumulated, _ = _lstm_run(tmp_path, "each", batch_size=2)
    assert not np.allclose(weights(unaccumulated)[0], weights(plain)[0], atol=1e-4)


@pytest.mark.slow  # several full runs; the suite's time budget
def test_an_interrupt_inside_an_accumulation_group_resumes_exactly(tmp_path):
    """Ctrl-C after the first batch of a group saves the gradient accumulated so far; the
    resumed run ends with the weights of the uninterrupted one."""
    bundle = synthetic_bundle()
    fields = dict(batch_size=2, grad_accum=2, epochs=2)
    straight = trainer_lib.Trainer(config_for(tmp_path, "straight", **fields), bundle=bundle,
                                   log=lambda *_: None)
    straight.fit()
    first = trainer_lib.Trainer(config_for(tmp_path, "cut", **fields), bundle=bundle, log=lambda *_: None)
    interrupt_after(first, 9)  # epoch 1 (6 steps per epoch), first batch of its second group
    with pytest.raises(trainer_lib.Interrupted, match="epoch 1, step 3 of 6"):
        first.fit()
    assert max(float(np.abs(v.numpy()).max()) for v in first.accumulator.ordered) > 0
    resumed = trainer_lib.Trainer(config_for(tmp_path, "cut", **fields), bundle=bundle, log=lambda *_: None)
    resumed.fit()
    for a, b in zip(weights(straight), weights(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


@pytest.mark.slow  # the default suite's 10-minute budget
def test_min_learning_rate_stops_the_run_after_the_decay_that_crosses_it(tmp_path, monkeypatch):
    """A flat validation loss: the plateau rule (patience 1, / 4) decays the learning rate
    after epochs 1 and 2 (1e-3 -> 2.5e-4 -> 6.25e-5); with --min-learning-rate 1e-4 the run
    stops after epoch 2 of 10, is evaluated, and a re-run of the same command trains nothing;
    min_learning_rate may change on resume (0 trains on)."""
    bundle = synthetic_bundle()
    fields = dict(epochs=10, patience=1, kl_zero_epochs=0, kl_ramp_epochs=0, min_learning_rate=1e-4)

    def flat(self, dataset, kl_weight):
        return {"loss": 5.0, "kl": 1.0}

    monkeypatch.setattr(steps_lib.TrainSteps, "loss_sums", flat)
    messages = []
    trainer = trainer_lib.Trainer(config_for(tmp_path, "early", **fields), bundle=bundle, log=messages.append)
    trainer.fit()
    results = trainer.evaluate()
    history = [json.loads(line) for line in (tmp_path / "early" / "history.jsonl").read_text().splitlines()]
    assert [h["learning_rate"] for h in history] == [1e-3, 1e-3, 2.5e-4]  # the rate each epoch trained at
    assert [h["lr_decayed"] for h in history] == [False, True, True]
    assert results["epochs_trained"] == 3
    assert any("below --min-learning-rate" in str(m) for m in messages)
    again = trainer_lib.Trainer(config_for(tmp_path, "early", **fields), bundle=bundle, log=lambda *_: None)
    again.fit()
    assert len((tmp_path / "early" / "history.jsonl").read_text().splitlines()) == 3
    on = trainer_lib.Trainer(config_for(tmp_path, "early", **dict(fields, epochs=4, min_learning_rate=0.0)),
                             bundle=bundle, log=lambda *_: None)
    on.fit()
    history = [json.loads(line) for line in (tmp_path / "early" / "history.jsonl").read_text().splitlines()]
    assert len(history) == 4 and history[-1]["learning_rate"] == pytest.approx(6.25e-5)


def test_weight_decay_scales_every_weight_but_the_biases(tmp_path):
    """Decoupled decay: with a zero gradient (Adam's update is then 0) one step multiplies each
    kernel, embedding and recurrent matrix by exactly 1 - lr * w and leaves every bias alone."""
    lr, decay = 1e-2, 0.5
    trainer = trainer_lib.Trainer(config_for(tmp_path, "decay", learning_rate=lr, weight_decay=decay),
                                  bundle=synthetic_bundle(), log=lambda *_: None)
    variables = trainer.model.trainable_variables
    before = [v.numpy() for v in variables]
    trainer.optimizer.apply([tf.zeros_like(v) for v in variables], variables)
    biases = 0
    for variable, old in zip(variables, before):
        is_bias = "bias" in variable.name
        biases += is_bias
        np.testing.assert_allclose(variable.numpy(), old if is_bias else old * (1 - lr * decay),
                                   rtol=1e-6, err_msg=variable.path)
    assert 0 < biases < len(variables)
    plain = trainer_lib.make_optimizer(config_for(tmp_path, "plain"), "float32")
    assert not plain.weight_decay


@pytest.mark.slow  # the default suite's 10-minute budget
def test_the_per_epoch_validation_reads_the_validation_subset_and_the_results_the_whole_split(tmp_path):
    """--validation-subset: the plateau rule and the best checkpoint see a fixed subset of the
    validation split (the history's validation_loss is that subset's -ELBO, recomputed here
    from the saved weights); results.json's validation NLL is still over the whole split."""
    bundle = synthetic_bundle()
    subset, subset_lengths = D.fixed_subset(bundle.splits["validation"], bundle.lengths["validation"], 2)
    bundle = inputs.DataBundle(splits={**bundle.splits, inputs.EPOCH_VALIDATION: subset},
                               lengths={**bundle.lengths, inputs.EPOCH_VALIDATION: subset_lengths},
                               vocabulary=None)
    config = config_for(tmp_path, "vsub", epochs=1, validation_subset=2)
    trainer = trainer_lib.Trainer(config, bundle=bundle, log=lambda *_: None)
    trainer.fit()
    record = json.loads((tmp_path / "vsub" / "history.jsonl").read_text())
    weight = config.kl_schedule_spec.at_epoch_end(0)
    on_subset = trainer.steps.loss_sums(inputs.batches(config, bundle, inputs.EPOCH_VALIDATION), weight)
    on_whole = trainer.steps.loss_sums(inputs.batches(config, bundle, "validation"), weight)
    assert record["validation_loss"] == pytest.approx(on_subset["loss"], rel=1e-5)
    assert abs(on_whole["loss"] - on_subset["loss"]) > 1e-3  # the two are told apart
    results = trainer.evaluate()
    assert results["validation"]["sequences"] == len(bundle.lengths["validation"]) == 6


def test_validation_nll_selects_a_second_checkpoint_reported_beside_the_best(tmp_path, monkeypatch):
    """--validation-nll-samples: once the KL ramp is over each epoch records the importance-
    sampled validation NLL; checkpoints/best_nll holds the epoch of the lowest (its weights give
    that NLL again), and results.json reports that checkpoint's validation and test NLL beside
    the -ELBO-selected checkpoint's. The -ELBO is made to rise after the ramp (so `best` is the
    first epoch after it) while training lowers the NLL: the two selections differ."""
    bundle = synthetic_bundle()
    config = config_for(tmp_path, "vnll", epochs=5, learning_rate=1e-2, validation_nll_samples=3,
                        patience=10)
    rising = iter(range(100))
    monkeypatch.setattr(steps_lib.TrainSteps, "loss_sums",
                        lambda self, dataset, kl_weight: {"loss": 5.0 + next(rising), "kl": 1.0})
    trainer = trainer_lib.Trainer(config, bundle=bundle, log=lambda *_: None)
    trainer.fit()
    results = trainer.evaluate()
    history = trainer.run_dir.read_history()
    ramped = [h for h in history if "improved" in h]  # the epochs of the plateau rule
    assert 2 <= len(ramped) < len(history)
    assert all(("validation_nll" in h) == ("improved" in h) for h in history)
    nlls = [h["validation_nll"] for h in ramped]
    chosen = ramped[int(np.argmin(nlls))]["epoch"] + 1  # checkpoints are numbered by epochs trained
    assert results["best_epoch"] == ramped[0]["epoch"] + 1 != chosen
    selected = results["selected_by_validation_nll"]
    assert selected["best_epoch"] == chosen and not selected["same_as_best"]
    assert selected["checkpoint"].endswith(f"best_nll/ckpt-{chosen}")
    # The selected checkpoint's weights, restored afresh, give its recorded and reported NLLs.
    fresh = trainer_lib.Trainer(config, bundle=bundle, log=lambda *_: None)
    fresh.checkpoints.restore_for_evaluation("best_nll")
    assert fresh.evaluate_nll(inputs.epoch_validation_split(bundle), 3)["nll"] == pytest.approx(min(nlls), rel=1e-5)
    assert fresh.evaluate_nll("test", config.nll_samples)["nll"] == pytest.approx(
        selected["test"]["nll"], rel=1e-5)
    assert selected["test"]["nll"] != pytest.approx(results["test"]["nll"], rel=1e-4)
    # The selection survives a restart: the restored lowest NLL is the history's.
    assert fresh.restore_latest()
    assert float(fresh.checkpoints.nll_selection.best.numpy()) == pytest.approx(min(nlls))
    assert trainer.run_dir.load("best_nll").checkpoint.endswith(f"ckpt-{chosen}")


def test_a_run_without_validation_nll_reports_the_best_checkpoint_only(straight_run):
    _, trainer, results = straight_run
    assert "selected_by_validation_nll" not in results
    assert trainer.checkpoints.best_nll.latest_checkpoint is None
    assert not any("validation_nll" in h for h in trainer.run_dir.read_history())


@pytest.mark.slow  # two runs; the default suite's 10-minute budget
def test_the_validation_nll_leaves_the_training_unchanged(tmp_path):
    """The per-epoch validation NLL draws its importance samples from stateless seeds: a run
    with it trains to the same weights and losses as one without (so the `best` checkpoint
    and its result are those of the run without it)."""
    bundle = synthetic_bundle()
    runs = {}
    for samples in (0, 2):
        trainer = trainer_lib.Trainer(config_for(tmp_path, f"nll{samples}", validation_nll_samples=samples),
                                      bundle=bundle, log=lambda *_: None)
        trainer.fit()
        runs[samples] = trainer
    for a, b in zip(weights(runs[0]), weights(runs[2])):
        np.testing.assert_array_equal(a, b)
    losses = {k: [h["train_loss"] for h in t.run_dir.read_history()] for k, t in runs.items()}
    assert losses[0] == losses[2]
    assert any("validation_nll" in h for h in runs[2].run_dir.read_history())


def test_the_initial_weights_do_not_depend_on_what_loading_the_data_drew(tmp_path, monkeypatch):
    """A run's first process prepares the dataset (TFDS draws from the global random
    generators), a later one only reads it: both must start from the same weights."""
    import random

    bundle = synthetic_bundle()

    def quiet_load(config):
        return bundle

    def drawing_load(config):  # what a first preparation may do to the global generators
        random.random(), np.random.random(), tf.random.uniform([3]), keras.random.uniform([2])
        return bundle

    initial = {}
    for name, load in (("quiet", quiet_load), ("drawing", drawing_load)):
        monkeypatch.setattr(trainer_lib, "load_data", load)
        trainer = trainer_lib.Trainer(config_for(tmp_path, name), log=lambda *_: None)
        initial[name] = weights(trainer)
        trainer.close()
    assert len(initial["quiet"]) > 0
    for a, b in zip(initial["quiet"], initial["drawing"]):
        np.testing.assert_array_equal(a, b)
