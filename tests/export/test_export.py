"""Exported SavedModels of every prior and the LSTM baseline, reloaded in a clean process.

The clean process cannot import tensorflow_probability, tf_keras, tf_latentflow,
trainers or export (`export_testing.CLEAN_PRELUDE`); one such process checks all
exported models (module fixture `reloaded`), the tests below read its answers.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import export_testing as H
from export import signatures
from export.__main__ import main as export_main
from export.run import IncompleteCheckpointError, load_run
from export.savedmodel import export_run, next_version

CASES = {  # case id -> (model, text); af-only is exported in the slow end-to-end test below
    "af-af": ("af-af", False), "af-scf": ("af-scf", False), "iaf-scf": ("iaf-scf", False),
    "lstm": ("lstm", False), "text-af-scf": ("af-scf", True),
}
# Music exports compile the sampler with XLA by default; every XLA compile (one per batch
# size and bucket) costs seconds, so af-scf takes the plain-graph sampler here
# (`--no-xla`): both paths are exported, reloaded clean and checked for every signature.
# The slow end-to-end test exports every prior with the defaults.
NO_XLA = {"af-scf"}
NLL_SAMPLES = H.TINY["nll_samples"]
BATCH_SIZES = (1, 3)  # log_prob
SAMPLE_BATCHES = (2, 3)  # sample (each batch size compiles the XLA sampler once more)
SAMPLE_LENGTH = 6


def scoring_inputs(model, batch, seed):
    rng = np.random.default_rng(seed)
    support = np.flatnonzero(model.length_model.probs.numpy()[1:]) + 1  # lengths with p(T) > 0
    lengths = rng.choice(support, size=batch).astype(np.int32)
    steps = int(lengths.max()) + 1  # one step of padding at least
    if model.is_text:
        x = rng.integers(0, model.vocab_size, size=(batch, steps))
    else:
        x = (rng.random((batch, steps, 88)) < 0.15)
    return x.astype(np.int32), lengths


def expected_nll(model, x, lengths):
    """The in-memory model's NLL of each sequence alone, cut to its length (at least one
    step), every one with the export's seed (0, 0) and chunk of 10; exact for the LSTM."""
    if model.exact_likelihood:
        return model.nll(x, lengths).numpy()
    return np.array([model.nll(x[i:i + 1, :max(int(t), 1)], lengths[i:i + 1], num_samples=NLL_SAMPLES,
                               seed=tf.constant([0, 0], tf.int64), chunk_size=10)["nll"].numpy()[0]
                     for i, t in enumerate(lengths)])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """case -> dict(path, model, inputs, in-memory nll and sample results)."""
    root = tmp_path_factory.mktemp("export")
    cases = {}
    for case, (name, text) in CASES.items():
        model = H.make_trained_run(root / "runs" / case, name, text=text)
        trained = load_run(root / "runs" / case)
        options = dict(jit_compile=False) if case in NO_XLA else {}
        path = export_run(root / "runs" / case, root / "models" / case, **options)
        sample_fn = signatures.make_sample_fn(trained.model, trained.vocabulary, **options)
        sample = sample_fn(tf.constant(2), tf.constant(SAMPLE_LENGTH), tf.constant(11, tf.int64))
        inputs, expected = {}, {}
        for batch in BATCH_SIZES:
            x, lengths = scoring_inputs(model, batch, seed=batch)
            inputs[batch] = (x, lengths)
            expected[batch] = expected_nll(model, x, lengths)
        cases[case] = dict(path=path, model=model, inputs=inputs, expected_nll=expected,
                           sample=sample["sequences"].numpy(), vocabulary=trained.vocabulary)
    return cases


CLEAN_SCRIPT = """
paths, inputs = json.loads(sys.argv[1]), np.load(sys.argv[2])
results = {}

def error_of(fn, **kwargs):
    try:
        fn(**kwargs)
    except tf.errors.InvalidArgumentError as error:
        return error.message
    return None

for case, path in paths.items():
    m = tf.saved_model.load(path)
    sample, log_prob = m.signatures["serving_default"], m.signatures["log_prob"]
    call = lambda n, length, seed: {k: v.numpy() for k, v in sample(
        num_samples=tf.constant(n), length=tf.constant(length), seed=tf.constant(seed, tf.int64)).items()}
    out = {"signatures": sorted(m.signatures)}
    a, b, c = call(2, SAMPLE_LENGTH, 11), call(2, SAMPLE_LENGTH, 11), call(2, SAMPLE_LENGTH, 12)
    out["sample"] = a["sequences"].tolist()
    # what the sampler returns is what log_prob scores (no dtype conversion in between)
    drawn = call(3, 0, 21)
    scored = log_prob(sequences=tf.constant(drawn["sequences"]), lengths=tf.constant(drawn["lengths"]))
    out["round_trip_nll"] = scored["nll"].numpy().tolist()
    out["sample_dtype"] = a["sequences"].dtype.name
    out["same_seed_equal"] = bool(np.array_equal(a["sequences"], b["sequences"]))
    out["other_seed_equal"] = bool(np.array_equal(a["sequences"], c["sequences"]))
    out["text"] = [t.decode() for t in a["text"]] if "text" in a else None
    for n in SAMPLE_BATCHES:
        d = call(n, 0, 5)
        out[f"drawn_{n}"] = {"shape": list(d["sequences"].shape), "lengths": d["lengths"].tolist()}
    max_length = MAX_LENGTHS[case]
    out["at_max"] = list(call(2, max_length, 1)["sequences"].shape)
    out["nll"] = {}
    for batch in (1, 3):
        r = log_prob(sequences=tf.constant(inputs[f"{case}/x/{batch}"]),
                     lengths=tf.constant(inputs[f"{case}/lengths/{batch}"]))
        out["nll"][batch] = [r["nll"].numpy().tolist(), r["nll_per_step"].numpy().tolist()]
    x, lengths = inputs[f"{case}/x/3"], inputs[f"{case}/lengths/3"]
    # a sequence's score without the request's other sequences, with more padding,
    # in another order, next to a copy of itself
    pad = np.zeros((3, 5) + x.shape[2:], x.dtype)
    score = lambda s, t: log_prob(sequences=tf.constant(s), lengths=tf.constant(t))["nll"].numpy().tolist()
    out["alone_padded"] = [score(np.concatenate([x[i:i + 1], pad[:1]], 1), lengths[i:i + 1])[0]
                           for i in range(3)]
    out["reversed"] = score(x[::-1], lengths[::-1])[::-1]
    out["twice"] = score(np.concatenate([x[:1], x[:1]]), np.concatenate([lengths[:1], lengths[:1]]))
    empty = log_prob(sequences=tf.zeros((0,) + x.shape[1:], tf.int32), lengths=tf.zeros([0], tf.int32))
    out["empty_request"] = list(empty["nll"].shape)
    if x.ndim == 3:  # music: p(T = 0) > 0; a request padded to no step at all
        out["zero_steps"] = score(np.zeros((2, 0, 88), np.int32), np.zeros(2, np.int32))
    errors = {
        "num_samples=0": error_of(sample, num_samples=tf.constant(0), length=tf.constant(3),
                                  seed=tf.constant(0, tf.int64)),
        "num_samples=-2": error_of(sample, num_samples=tf.constant(-2), length=tf.constant(3),
                                   seed=tf.constant(0, tf.int64)),
        "length=-1": error_of(sample, num_samples=tf.constant(1), length=tf.constant(-1),
                              seed=tf.constant(0, tf.int64)),
        "length>max": error_of(sample, num_samples=tf.constant(1), length=tf.constant(max_length + 1),
                               seed=tf.constant(0, tf.int64)),
        "lengths>padded": error_of(log_prob, sequences=tf.constant(x),
                                   lengths=tf.constant(lengths + x.shape[1])),
        "lengths count": error_of(log_prob, sequences=tf.constant(x), lengths=tf.constant(lengths[:2])),
        "lengths<0": error_of(log_prob, sequences=tf.constant(x), lengths=tf.constant(-lengths)),
        "num_samples>max": error_of(sample, num_samples=tf.constant(1025), length=tf.constant(3),
                                    seed=tf.constant(0, tf.int64)),
    }
    if x.ndim == 2:  # text: p(T = 0) = 0, sentences are never empty
        errors["lengths=0"] = error_of(log_prob, sequences=tf.constant(x),
                                       lengths=tf.constant(np.where(np.arange(len(lengths)) == 0, 0,
                                                                    lengths).astype(np.int32)))
    long_shape = (1, max_length + 2) + x.shape[2:]
    errors["lengths>max"] = error_of(log_prob, sequences=tf.zeros(long_shape, tf.int32),
                                     lengths=tf.constant([max_length + 1]))
    if x.ndim == 2:
        errors["id>=vocab"] = error_of(log_prob, sequences=tf.constant(x + 100), lengths=tf.constant(lengths))
        errors["id<0"] = error_of(log_prob, sequences=tf.constant(x - 100), lengths=tf.constant(lengths))
    else:
        errors["note=2"] = error_of(log_prob, sequences=tf.constant(x * 2), lengths=tf.constant(lengths))
        errors["note=-1"] = error_of(log_prob, sequences=tf.constant(-x), lengths=tf.constant(lengths))
        errors["87 notes"] = error_of(log_prob, sequences=tf.constant(x[..., :87]),
                                      lengths=tf.constant(lengths))
    out["errors"] = errors
    results[case] = out
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def reloaded(exported, tmp_path_factory):
    """case -> the clean process's answers (see CLEAN_SCRIPT)."""
    arrays = {}
    for case, info in exported.items():
        for batch, (x, lengths) in info["inputs"].items():
            arrays[f"{case}/x/{batch}"], arrays[f"{case}/lengths/{batch}"] = x, lengths
    npz = tmp_path_factory.mktemp("inputs") / "inputs.npz"
    np.savez(npz, **arrays)
    paths = {case: str(info["path"]) for case, info in exported.items()}
    max_lengths = {case: int(info["model"].max_length) for case, info in exported.items()}
    script = (f"SAMPLE_LENGTH = {SAMPLE_LENGTH}\nSAMPLE_BATCHES = {SAMPLE_BATCHES!r}\nMAX_LENGTHS = {max_lengths!r}\n"
              f"sys.argv[1:] = [{json.dumps(json.dumps(paths))}, {str(npz)!r}]\n" + CLEAN_SCRIPT)
    return H.run_clean(script)


@pytest.mark.parametrize("case", CASES)
def test_log_prob_matches_the_in_memory_model(case, exported, reloaded):
    info, got = exported[case], reloaded[case]
    assert got["signatures"] == ["log_prob", "serving_default"]
    for batch in BATCH_SIZES:
        nll, per_step = (np.array(v) for v in got["nll"][str(batch)])
        assert nll.shape == (batch,)
        np.testing.assert_allclose(nll, info["expected_nll"][batch], rtol=1e-5, atol=1e-4)
        lengths = info["inputs"][batch][1]
        unit = np.log(2.0) if info["model"].is_text else 1.0
        np.testing.assert_allclose(per_step, nll / (lengths + 1) / unit, rtol=1e-6)
        assert np.all(np.isfinite(nll)) and np.all(nll > 0)


@pytest.mark.parametrize("case", CASES)
def test_a_sequence_scores_the_same_alone_padded_reordered_or_repeated(case, reloaded):
    """log_prob of a sequence depends on nothing else in the request (TF Serving's
    request batching must not change a client's answer; `score_each_sequence`)."""
    got = reloaded[case]
    batch = np.array(got["nll"]["3"][0])
    np.testing.assert_allclose(got["alone_padded"], batch, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got["reversed"], batch, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got["twice"], [batch[0], batch[0]], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("case", CASES)
def test_empty_requests_and_zero_steps_score(case, exported, reloaded):
    got, model = reloaded[case], exported[case]["model"]
    assert got["empty_request"] == [0]
    if not model.is_text:  # T = 0: only -log p(T = 0) (the latent terms of no step are 0)
        p0 = float(model.length_model.probs.numpy()[0])
        assert p0 > 0
        np.testing.assert_allclose(got["zero_steps"], [-np.log(p0)] * 2, rtol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_sample_is_reproducible_and_matches_the_in_memory_sampler(case, exported, reloaded):
    info, got = exported[case], reloaded[case]
    sample = np.array(got["sample"])
    np.testing.assert_array_equal(sample, info["sample"])  # the same sampler, same weights
    assert got["same_seed_equal"] and not got["other_seed_equal"]
    text = info["model"].is_text
    assert got["sample_dtype"] == "int32"  # for music and text: log_prob's input dtype
    assert len(got["round_trip_nll"]) == 3 and np.all(np.isfinite(got["round_trip_nll"]))
    assert sample.shape == ((2, SAMPLE_LENGTH) if text else (2, SAMPLE_LENGTH, 88))
    assert set(np.unique(sample)) <= (set(range(len(info["vocabulary"]))) if text else {0, 1})
    if text:
        vocabulary = info["vocabulary"]
        decoded = ["".join("" if i == 0 else vocabulary[i] for i in row) for row in sample]
        assert got["text"] == decoded
    max_length = info["model"].max_length
    for n in SAMPLE_BATCHES:
        drawn = got[f"drawn_{n}"]
        lengths = drawn["lengths"]
        assert len(lengths) == n and all(0 <= t <= max_length for t in lengths)
        assert drawn["shape"][:2] == [n, max(max(lengths), 1)]
    assert got["at_max"][:2] == [2, max_length]


ERROR_WORDS = {
    "num_samples=0": ("`num_samples`", "positive"), "num_samples=-2": ("`num_samples`", "positive"),
    "length=-1": ("`length`", ">= 0"), "length>max": ("`length`", "maximum length"),
    "lengths>padded": ("`lengths`", "padded"), "lengths count": ("`lengths`", "one entry per sequence"),
    "lengths<0": ("`lengths`", ">= 0"), "lengths>max": ("`lengths`", "maximum length"),
    "id>=vocab": ("`sequences`", "vocabulary"), "id<0": ("`sequences`", ">= 0"),
    "note=2": ("`sequences`", "0 or 1"), "note=-1": ("`sequences`", "0 or 1"),
    "87 notes": ("`sequences`", "88 notes"),
    "num_samples>max": ("`num_samples`", "maximum of 1024"),
    "lengths=0": ("`lengths`", "probability 0"),
}


@pytest.mark.parametrize("case", ["af-af", "iaf-scf", "lstm", "text-af-scf"])
def test_invalid_requests_fail_with_a_message_naming_the_input(case, reloaded):
    errors = reloaded[case]["errors"]
    expected = [k for k in ERROR_WORDS if k in errors]
    assert len(expected) == 12  # music: 11 + num_samples>max; text: 10 + that + lengths=0
    for key in expected:
        message = errors[key]
        assert message is not None, f"{case}: {key} was accepted"
        for word in ERROR_WORDS[key]:
            assert word in message, f"{case}: {key}: {message[:300]}"


@pytest.mark.slow  # the default suite's 10-minute budget
def test_saved_model_cli_lists_both_signatures(exported):
    cli = shutil.which("saved_model_cli")
    if cli is None:
        pytest.skip("saved_model_cli is not installed")
    shown = {}
    for case in ("af-af", "text-af-scf"):
        proc = subprocess.run([cli, "show", "--dir", str(exported[case]["path"]), "--all"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        shown[case] = proc.stdout
    music, text = shown["af-af"], shown["text-af-scf"]
    for out in (music, text):
        assert "signature_def['serving_default']" in out and "signature_def['log_prob']" in out
        for name in ("num_samples", "length", "seed", "sequences", "lengths", "nll", "nll_per_step"):
            assert f"['{name}']" in out
    assert "dtype: DT_INT32\n        shape: (-1, -1, 88)" in music
    assert "outputs['text']" in text and "outputs['text']" not in music
    assert "dtype: DT_INT32\n        shape: (-1, -1)" in text


def test_cli_exports_a_trainer_run_into_numbered_versions(tmp_path):
    run_dir = tmp_path / "run"
    H.make_trained_run(run_dir, "lstm")  # the Trainer -> CLI path of every model: the slow test below
    base = tmp_path / "models"
    assert next_version(base) == 1
    # This run has a best checkpoint only: asking for the latest is a clear error.
    assert export_main(["--run-dir", str(run_dir), "--output", str(base), "--checkpoint", "latest",
                        "--no-xla"]) == 1
    assert export_main(["--run-dir", str(run_dir), "--output", str(base), "--no-xla"]) == 0
    assert export_main(["--run-dir", str(run_dir), "--output", str(base), "--version", "7",
                        "--no-xla"]) == 0
    assert sorted(p.name for p in base.iterdir()) == ["1", "7"] and next_version(base) == 8
    assert export_main(["--run-dir", str(run_dir), "--output", str(base), "--version", "7"]) == 1
    info = json.loads((base / "7" / "assets.extra" / "latentflow.json").read_text())
    assert info["model"] == "lstm" and info["kind"] == "music" and info["nll_scoring"] == "exact"
    loaded = tf.saved_model.load(str(base / "1"))
    out = loaded.signatures["serving_default"](num_samples=tf.constant(2), length=tf.constant(4),
                                               seed=tf.constant(1, tf.int64))
    assert out["sequences"].shape == (2, 4, 88)


def test_missing_run_or_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_run(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no best or latest checkpoint"):
        load_run(tmp_path)
    assert export_main(["--run-dir", str(tmp_path), "--output", str(tmp_path / "m")]) == 1


def test_checkpoint_missing_weights_is_refused(tmp_path):
    """A checkpoint of `model` alone (before model_weights existed) misses the layers held
    in lists; exporting it would serve untrained weights, so load_run refuses it."""
    model = H.make_trained_run(tmp_path, "af-scf", steps=0)
    for path in (tmp_path / "checkpoints" / "best").iterdir():
        path.unlink()
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), tmp_path / "checkpoints" / "best",
                               max_to_keep=1).save(checkpoint_number=1)
    with pytest.raises(IncompleteCheckpointError, match="holds no list of the model's weights"):
        load_run(tmp_path)


@pytest.mark.slow  # the default suite's 10-minute budget
def test_sample_cli_writes_midi_files_and_text(exported, tmp_path):
    from export import midi
    from export.sample import draw, main as sample_main

    music = exported["af-scf"]["path"]  # the plain-graph sampler: no XLA compile per load
    assert sample_main(["--model", str(music), "--num-samples", "3", "--length", "5", "--seed", "2",
                        "--out", str(tmp_path / "music")]) == 0
    expected = draw(music, 3, 5, 2)["sequences"]
    files = sorted((tmp_path / "music").glob("*.mid"))
    assert [f.name for f in files] == ["sample_0.mid", "sample_1.mid", "sample_2.mid"]
    for path, roll in zip(files, expected):
        back, tempo = midi.read_midi(path)
        np.testing.assert_array_equal(back, roll)
        assert tempo == pytest.approx(120)

    text = exported["text-af-scf"]["path"]
    assert sample_main(["--model", str(text), "--num-samples", "4", "--length", "5",
                        "--out", str(tmp_path / "text")]) == 0
    lines = (tmp_path / "text" / "samples.txt").read_text().split("\n")
    assert len(lines) == 5 and lines[-1] == ""
    assert [line.encode() for line in lines[:4]] == list(draw(text, 4, 5, 0)["text"])
    assert sample_main(["--model", str(text), "--length", "999", "--out", str(tmp_path / "x")]) == 1
    assert sample_main(["--model", str(tmp_path), "--out", str(tmp_path / "x")]) == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["af-af", "af-scf", "iaf-scf", "af-only", "lstm"])
def test_trainer_run_exports_with_the_cli_and_reloads_clean(name, tmp_path):
    """The whole path: Trainer run -> `python -m export` -> clean reload -> both signatures."""
    trainer = H.train_tiny_run(tmp_path / "run", name, steps=2)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "export", "--run-dir", str(tmp_path / "run"),
                           "--output", str(tmp_path / "models")], capture_output=True, text=True,
                          env=env, cwd=str(H.REPO_ROOT), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "models" / "1" / "saved_model.pb").is_file()
    x, lengths = scoring_inputs(trainer.model, 2, seed=0)
    expected = expected_nll(trainer.model, x, lengths)
    got = H.run_clean(f"""
        m = tf.saved_model.load({str(tmp_path / "models" / "1")!r})
        s = m.signatures["serving_default"](num_samples=tf.constant(2), length=tf.constant(0),
                                            seed=tf.constant(1, tf.int64))
        r = m.signatures["log_prob"](sequences=tf.constant({x.tolist()!r}),
                                     lengths=tf.constant({lengths.tolist()!r}))
        print(json.dumps({{"nll": r["nll"].numpy().tolist(), "shape": list(s["sequences"].shape)}}))
    """)
    np.testing.assert_allclose(got["nll"], expected, rtol=1e-5, atol=1e-4)
    assert got["shape"][0] == 2 and got["shape"][2] == 88
