"""LatentFlowVAE: the latent normalizing flow model for discrete sequences (Ziegler & Rush 2019).

Generative model (section 3, figure 1; section 4):

    T ~ p(T)                                   empirical length distribution (`layers.LengthModel`)
    z_1:T ~ p(z | T)                           a flow prior (`priors.make_prior`, section 4.3)
    x_t ~ p(x_t | z_1:T, T), t < T             independent emissions (`layers.Emission`)

    log p(x) = log p(T) + log p(x | T),   p(x | T) = int p(x | z, T) p(z | T) dz

Inference network q(z | x) = prod_t N(z_t; mu_t, sigma_t^2) (`layers.InferenceNetwork`).

ELBO (section 4.1, eq. 5), estimated with K reparameterised samples z_k ~ q(z | x):

    log p(x | T) >= E_q[log p(x | z, T)] - E_q[log q(z | x) - log p(z | T)]
                 ~= (1/K) sum_k log p(x | z_k, T)  -  (1/K) sum_k [log q(z_k | x) - log p(z_k | T)]
                  =         reconstruction         -                  KL

The KL is a Monte Carlo estimate (not closed form) because the prior is a
flow. Training minimises, per sequence,

    loss = -reconstruction + kl_weight * KL - log p(T)        (nats; KL annealing: kl_weight 0 -> 1)

and the reference's objective is the batch mean of loss / (T + 1)
(`evaluation.per_step(loss, lengths)`; harvardnlp/TextFlow, `main.py`, `run_epoch`).
The -log p(T) term has no gradient; it is kept so the numbers are comparable
with the reported NLLs.

Importance-sampled NLL (section 5, "we report NLL estimated with 50 importance
samples"; the reference's `run_epoch` with `NLL_samples`):

    log w_k = log p(x | z_k, T) + log p(z_k | T) - log q(z_k | x)
    nll     = -log p(T) - log (1/K) sum_k w_k

In expectation an upper bound on -log p(x) that tightens as K grows (Burda et
al. 2016, IWAE); on the same samples never above -ELBO (Jensen: mean of logs <=
log of mean).

All methods are graph-compatible (no Python loops over time, no NumPy) and use
stateless seeds (`seeds.as_stateless_seed`): the same seed gives the same result.
Mixed precision: the model's dtype policy (its `dtype` argument; Keras's global
policy when none is given) reaches every sublayer explicitly: the LSTMs of the
inference network, the emission and the prior, and the flow conditioners run in
its compute dtype; z, the flow math and its log-determinants, log q, log p(z),
log p(x | z) and every reduction over samples are float32.
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf

from tf_latentflow.layers.length_model import LengthModel
from tf_latentflow.evaluation import importance_sampled_nll
from tf_latentflow.layers.emission import Emission
from tf_latentflow.layers.inference import InferenceNetwork
from tf_latentflow.layers.sequence_space import SequenceSpace
from tf_latentflow.priors import make_prior
from tf_latentflow.seeds import as_stateless_seed

__all__ = ["LatentFlowVAE"]


@keras.saving.register_keras_serializable(package="tf_latentflow")
class LatentFlowVAE(keras.Model):
    """The latent flow VAE with a flow prior, for text (Categorical) or music (88 Bernoullis).

    Args:
      max_length: T_max of the length model; also the depth of the T-features
        (every length must be <= max_length).
      vocab_size: text: number of token ids. Exactly one of vocab_size and
        num_notes must be given.
      num_notes: music: notes per frame (88).
      prior: prior name for `priors.make_prior` ("af-af", "af-scf", "iaf-scf",
        "af-only", ablations, "standard-normal").
      latent_size: H, latent size per step (50).
      embedding_size: input embedding size D (500); the output projection size
        when tie_weights.
      hidden_units: units per direction of the inference and emission BiLSTMs (500).
      inference_layers, emission_layers: BiLSTM depths (2, 2).
      prior_lstm_units, prior_lstm_layers: the prior's LSTM over time (500, 2).
      num_flow_layers: layers of the prior's within-step flow (5).
      flow_hidden_units: the prior's MADE / coupling widths ((100, 100)).
      inference_dropout, emission_dropout: dropout rates in the inference
        network and the emission (0, 0: the reference's default `--dlocs
        prior_rnn` puts dropout only inside the prior).
      tie_weights: the emission's output layer is the transposed input
        embedding (True, as the reference for text and music).
      length_model: a `layers.LengthModel` with this max_length; by default a
        uniform one, to be replaced by assigning `model.length_model.probs`
        (a weight of the model, saved with it).
      prior_kwargs: extra keyword arguments for `make_prior`.
    """

    def __init__(self, max_length: int, vocab_size: int | None = None, num_notes: int | None = None,
                 prior: str = "af-af", latent_size: int = 50, embedding_size: int = 500,
                 hidden_units: int = 500, inference_layers: int = 2, emission_layers: int = 2,
                 prior_lstm_units: int = 500, prior_lstm_layers: int = 2, num_flow_layers: int = 5,
                 flow_hidden_units=(100, 100), inference_dropout: float = 0.0,
                 emission_dropout: float = 0.0, tie_weights: bool = True,
                 length_model: LengthModel | None = None, prior_kwargs: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        space = SequenceSpace.checked("LatentFlowVAE", max_length, vocab_size, num_notes)
        self.max_length, self.vocab_size, self.num_notes = space.max_length, space.vocab_size, space.num_notes
        self.is_text = space.is_text
        self.prior_name = str(prior)
        self.latent_size = int(latent_size)
        self.embedding_size = int(embedding_size)
        self.hidden_units = int(hidden_units)
        self.inference_layers = int(inference_layers)
        self.emission_layers = int(emission_layers)
        self.prior_lstm_units = int(prior_lstm_units)
        self.prior_lstm_layers = int(prior_lstm_layers)
        self.num_flow_layers = int(num_flow_layers)
        self.flow_hidden_units = tuple(int(u) for u in flow_hidden_units)
        self.inference_dropout = float(inference_dropout)
        self.emission_dropout = float(emission_dropout)
        self.tie_weights = bool(tie_weights)
        self.prior_kwargs = dict(prior_kwargs or {})

        self.length_model = LengthModel.for_model("LatentFlowVAE", self.max_length, length_model)
        policy = self.dtype_policy
        self.inference = InferenceNetwork(
            self.latent_size, self.max_length, vocab_size=self.vocab_size, num_notes=self.num_notes,
            embedding_size=self.embedding_size, hidden_units=self.hidden_units,
            num_layers=self.inference_layers, dropout=self.inference_dropout, name="inference",
            dtype=policy)
        self.emission = Emission(
            self.latent_size, self.max_length, vocab_size=self.vocab_size, num_notes=self.num_notes,
            hidden_units=self.hidden_units, num_layers=self.emission_layers,
            projection_size=self.embedding_size if self.tie_weights else self.hidden_units,
            dropout=self.emission_dropout,
            tied_embedding=self.inference.embedding if self.tie_weights else None,
            name="emission", dtype=policy)
        self.prior = make_prior(
            self.prior_name, latent_size=self.latent_size, max_length=self.max_length,
            lstm_units=self.prior_lstm_units, lstm_layers=self.prior_lstm_layers,
            num_flow_layers=self.num_flow_layers, flow_hidden_units=self.flow_hidden_units,
            name="prior", dtype=policy, **self.prior_kwargs)
        self.build()

    # -- weights ---------------------------------------------------------------------------

    def build(self, input_shape=None):
        """Create every weight now (the trainers' tf.function steps must not create variables)."""
        self.inference.build()
        self.emission.build()
        # Priors build on first use (some lazily, per sub-layer); one tiny pass creates every weight.
        z = tf.zeros([1, 1, self.latent_size])
        self.prior.log_prob(z, tf.ones([1], tf.int32))
        self.built = True

    # -- the per-sample terms --------------------------------------------------------------

    def log_weight_terms(self, x, lengths, num_samples: int = 1, seed=None, training=False,
                         posterior=None):
        """Per-sample sequence totals for K samples z_k ~ q(z | x), each float32 [K, B]:

          log_px_z = sum_{t<T} log p(x_t | z_k, T)
          log_pz   = sum_{t<T} log p(z_k,t | z_k,<t, T)
          log_qz   = sum_{t<T} log q(z_k,t | x)

        Padding steps contribute exactly 0. num_samples: a Python int K >= 1.
        posterior: q's (mu, log_var) from `InferenceNetwork.gaussian_parameters`, when
        several calls draw from one encoder pass (the NLL's chunks); None runs it.
        """
        x = tf.convert_to_tensor(x)
        lengths = tf.cast(tf.convert_to_tensor(lengths), tf.int32)
        k = int(num_samples)
        if k < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        with tf.control_dependencies([tf.debugging.assert_less_equal(
                tf.reduce_max(tf.concat([lengths, [0]], 0)), tf.shape(x)[1],
                message="LatentFlowVAE: a length exceeds the time dimension of x")]):
            lengths = tf.identity(lengths)
        if posterior is None:
            posterior = self.inference.gaussian_parameters(x, lengths, training=training)
        z, log_q = self.inference.sample_given(*posterior, lengths, k, seed=seed)
        batch, steps = tf.shape(z)[1], tf.shape(z)[2]
        flat_z = tf.reshape(z, tf.stack([k * batch, steps, self.latent_size]))
        flat_lengths = tf.tile(lengths, [k])
        flat_x = tf.tile(x, tf.concat([[k], tf.ones([tf.rank(x) - 1], tf.int32)], 0))
        log_p = tf.cast(self.prior.log_prob(flat_z, flat_lengths, training=training), tf.float32)
        log_px = self.emission.log_prob(flat_x, flat_z, flat_lengths, training=training)
        to_kb = lambda steps_terms: tf.reshape(tf.reduce_sum(steps_terms, axis=-1), tf.stack([k, batch]))
        return {"log_px_z": to_kb(log_px), "log_pz": to_kb(log_p),
                "log_qz": tf.reduce_sum(tf.cast(log_q, tf.float32), axis=-1)}

    # -- ELBO ------------------------------------------------------------------------------

    def elbo(self, x, lengths, num_samples: int = 1, kl_weight=1.0, seed=None, training=False):
        """The K-sample ELBO and the weighted training loss, per sequence (nats, float32 [B]).

        Returns a dict:
          reconstruction: (1/K) sum_k log p(x | z_k, T)                    (<= 0 for text)
          kl:             (1/K) sum_k [log q(z_k | x) - log p(z_k | T)]    (Monte Carlo KL)
          log_p_length:   log p(T)
          elbo:           reconstruction - kl + log p(T)   (a lower bound on log p(x) in expectation)
          loss:           -reconstruction + kl_weight * kl - log p(T)      (what training minimises)
        `evaluation.per_step(loss, lengths)` then a batch mean gives the
        reference's objective. seed: int or stateless [2] seed (None: fresh).
        """
        lengths = tf.cast(tf.convert_to_tensor(lengths), tf.int32)
        terms = self.log_weight_terms(x, lengths, num_samples, seed=seed, training=training)
        reconstruction = tf.reduce_mean(terms["log_px_z"], axis=0)
        kl = tf.reduce_mean(terms["log_qz"] - terms["log_pz"], axis=0)
        log_p_length = self.length_model.log_prob(lengths)
        kl_weight = tf.cast(kl_weight, tf.float32)
        return {"reconstruction": reconstruction, "kl": kl, "log_p_length": log_p_length,
                "elbo": reconstruction - kl + log_p_length,
                "loss": -reconstruction + kl_weight * kl - log_p_length}

    # -- importance-sampled NLL ------------------------------------------------------------

    def nll(self, x, lengths, num_samples: int = 50, seed=None, chunk_size: int | None = None):
        """Importance-sampled -log p(x) with K = num_samples samples of q (section 5), in nats.

        Returns a dict of float32 [B] tensors:
          nll:            -log p(T) - log (1/K) sum_k exp(log w_k),
                          log w_k = log p(x | z_k, T) + log p(z_k | T) - log q(z_k | x)
          reconstruction: (1/K) sum_k log p(x | z_k, T)    } the split the reference reports,
          kl:             (1/K) sum_k [log q - log p(z)]   } from the same K samples
          neg_elbo:       -reconstruction + kl - log p(T)  (>= nll always: Jensen on the same samples)
          log_p_length:   log p(T)
        Divide by T + 1 for the paper's units (`evaluation.bits_per_char`,
        `evaluation.nats_per_step`).

        chunk_size: evaluate the samples chunk_size at a time, one chunk after
        the other (a `tf.while_loop`), to bound memory; None does all K at once.
        Chunk c uses the seed fold_in(seed, c), so results depend on chunk_size
        (not on anything else). Runs in inference mode (no dropout), with one encoder
        pass for all chunks (`log_weight_terms(posterior=...)`).
        """
        lengths = tf.cast(tf.convert_to_tensor(lengths), tf.int32)
        k = int(num_samples)
        chunk = k if chunk_size is None else max(1, min(int(chunk_size), k))
        num_chunks = -(-k // chunk)
        seed = as_stateless_seed(seed)
        posterior = self.inference.gaussian_parameters(x, lengths)
        draw = functools.partial(self.log_weight_terms, x, lengths, posterior=posterior)
        if num_chunks == 1:
            terms = draw(k, seed=seed)
        else:
            seeds = tf.stack([tf.random.experimental.stateless_fold_in(seed, c) for c in range(num_chunks)])
            spec = tf.TensorSpec([chunk, None], tf.float32)
            chunks = tf.map_fn(lambda s: draw(chunk, seed=s), seeds,
                               fn_output_signature={"log_px_z": spec, "log_pz": spec, "log_qz": spec},
                               parallel_iterations=1)
            terms = {name: tf.reshape(value, tf.stack([num_chunks * chunk, -1]))[:k]
                     for name, value in chunks.items()}
        log_w = terms["log_px_z"] + terms["log_pz"] - terms["log_qz"]  # [K, B]
        log_p_length = self.length_model.log_prob(lengths)
        reconstruction = tf.reduce_mean(terms["log_px_z"], axis=0)
        kl = tf.reduce_mean(terms["log_qz"] - terms["log_pz"], axis=0)
        return {"nll": importance_sampled_nll(log_w, axis=0) - log_p_length,
                "reconstruction": reconstruction, "kl": kl,
                "neg_elbo": -reconstruction + kl - log_p_length, "log_p_length": log_p_length}

    # -- the SequenceModel interface (tf_latentflow.sequence_model) -------------------------

    exact_likelihood = False  # the NLL is importance-sampled

    def loss_terms(self, x, lengths, *, kl_weight=1.0, num_samples: int = 1, seed=None,
                   training=False):
        """{"loss", "kl"}, float32 [B]: the training loss of `elbo` and its Monte Carlo KL."""
        out = self.elbo(x, lengths, num_samples=num_samples, kl_weight=kl_weight, seed=seed,
                        training=training)
        return {"loss": out["loss"], "kl": out["kl"]}

    def nll_terms(self, x, lengths, *, num_samples: int = 50, seed=None, chunk_size: int | None = None):
        """{"nll", "reconstruction", "kl"}, float32 [B], nats: the importance-sampled `nll`,
        -(1/K) sum_k log p(x | z_k, T) and the KL estimate, from the same K samples."""
        out = self.nll(x, lengths, num_samples=num_samples, seed=seed, chunk_size=chunk_size)
        return {"nll": out["nll"], "reconstruction": -out["reconstruction"], "kl": out["kl"]}

    # -- sampling --------------------------------------------------------------------------

    def sample(self, num_samples, lengths=None, seed=None, max_length=None):
        """Draw sequences: T ~ p(T) (unless given), z ~ p(z | T), x_t ~ p(x_t | z, T) in parallel.

        Args:
          num_samples: N (int or scalar tensor).
          lengths: int [N] or a scalar (the same T for all); drawn from
            `length_model` when None.
          seed: int or stateless [2] seed; the same seed gives the same
            sequences (None: fresh).
          max_length: the padded time dimension (static if a Python int);
            default max(max(lengths), 1) (an LSTM needs one step). Must be >=
            every length. The serial loops (an AF-in-time prior's, the emission's)
            stop after the longest length, so padding beyond it (an exporter's XLA
            bucket) costs them nothing; it changes no draw at valid steps.

        Returns:
          (x, lengths): x int32 [N, T] ids (text) or int32 [N, T, num_notes] in
          {0, 1} (music), zero at padding steps; lengths int32 [N].
        """
        seeds = tf.unstack(tf.random.experimental.stateless_split(as_stateless_seed(seed), 3))
        num_samples = tf.cast(num_samples, tf.int32)
        if lengths is None:
            lengths = self.length_model.sample(num_samples, seed=seeds[0])
        lengths = tf.broadcast_to(tf.cast(tf.convert_to_tensor(lengths), tf.int32),
                                  tf.reshape(num_samples, [1]))
        if max_length is None:
            steps = tf.reduce_max(tf.concat([lengths, [1]], 0))
        else:
            steps = tf.cast(max_length, tf.int32)
        with tf.control_dependencies([tf.debugging.assert_less_equal(
                lengths, steps, message="LatentFlowVAE.sample: a length exceeds max_length")]):
            steps = tf.identity(steps)
        z = self.prior.sample(lengths, seed=seeds[1], max_steps=steps)
        x = self.emission.sample(tf.cast(z, tf.float32), lengths, seed=seeds[2])
        if isinstance(max_length, int):
            x.set_shape([None, max_length] + ([] if self.is_text else [self.num_notes]))
        return x, lengths

    # -- Keras -----------------------------------------------------------------------------

    @staticmethod
    def _unpack(inputs):
        if isinstance(inputs, dict):
            return inputs["x"], inputs["lengths"]
        x, lengths = inputs
        return x, lengths

    def call(self, inputs, training=False):
        """Keras entry point: the one-sample `elbo` dict of a batch dict or (x, lengths), fresh seed."""
        x, lengths = self._unpack(inputs)
        return self.elbo(x, lengths, num_samples=1, training=training)

    def get_config(self):
        """Constructor arguments; the length probabilities travel with the weights."""
        return {**super().get_config(), "max_length": self.max_length, "vocab_size": self.vocab_size,
                "num_notes": self.num_notes, "prior": self.prior_name, "latent_size": self.latent_size,
                "embedding_size": self.embedding_size, "hidden_units": self.hidden_units,
                "inference_layers": self.inference_layers, "emission_layers": self.emission_layers,
                "prior_lstm_units": self.prior_lstm_units, "prior_lstm_layers": self.prior_lstm_layers,
                "num_flow_layers": self.num_flow_layers, "flow_hidden_units": list(self.flow_hidden_units),
                "inference_dropout": self.inference_dropout, "emission_dropout": self.emission_dropout,
                "tie_weights": self.tie_weights, "prior_kwargs": dict(self.prior_kwargs)}
