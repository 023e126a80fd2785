"""The length distribution p(T) (Ziegler & Rush 2019, section 3, "length" term).

The model scores a sequence as  log p(x) = log p(T) + log p(x | T),  where p(T)
is not learned but is the empirical distribution of the lengths of the training
and validation sequences, as in the reference implementation
(harvardnlp/TextFlow, `utils.py`, `build_log_p_T`):

  counts[T] = #{training and validation sequences of length T},  T = 0..T_max
  text:   T_max = max length;                 p(T) = counts[T] / sum(counts)
  music:  T_max = floor(1.25 * max length);   p(T) = (counts[T] + 1) / sum(counts + 1)

i.e. for music, add-one smoothing over every T in 0..T_max (T = 0 included, as in
the reference; pass `min_length=1` to give T = 0 no mass). Lengths above T_max
have probability 0 (log-probability -inf).

`LengthModel` is a Keras 3 layer holding p as a non-trainable weight, so it is
saved and restored with any `keras.Model` or `tf.train.Checkpoint` that tracks
it. `T_max` is also the depth of the T-conditioning one-hot vectors
(`t_features.t_features(..., depth=length_model.max_length)`).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

SMOOTHING_HEADROOM = 1.25  # music: support extended to floor(1.25 * longest length)


def empirical_length_probs(lengths, *, smoothing: bool, headroom: float = SMOOTHING_HEADROOM,
                           min_length: int = 0) -> np.ndarray:
    """float64 [T_max + 1] probabilities p(T) of the reference rule (see module docstring).

    Args:
      lengths: the training and validation sequence lengths (positive ints).
      smoothing: add one to every count in min_length..T_max (music) or not (text).
      headroom: with smoothing, T_max = floor(headroom * max(lengths)).
      min_length: lengths below this get probability 0 (0 reproduces the reference).
    """
    lengths = np.asarray(lengths, np.int64).reshape(-1)
    if lengths.size == 0:
        raise ValueError("empirical_length_probs: no lengths given")
    if lengths.min() < max(min_length, 0):
        raise ValueError(f"empirical_length_probs: length {lengths.min()} below min_length {min_length}")
    max_length = int(lengths.max())
    if smoothing:
        max_length = int(max_length * headroom)
    counts = np.bincount(lengths, minlength=max_length + 1).astype(np.float64)
    if smoothing:
        counts[min_length:] += 1.0
    return counts / counts.sum()


@keras.saving.register_keras_serializable(package="tf_latentflow")
class LengthModel(keras.layers.Layer):
    """p(T) over T = 0..max_length as a non-trainable weight `probs`.

    Calling the layer on int lengths returns their log-probabilities.
    """

    def __init__(self, max_length: int, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if int(max_length) < 1:
            raise ValueError(f"LengthModel: max_length must be >= 1, got {max_length}")
        self.max_length = int(max_length)
        self.probs = self.add_weight(
            shape=(self.max_length + 1,), dtype="float32", trainable=False, name="probs",
            initializer=keras.initializers.Constant(1.0 / (self.max_length + 1)))
        self.built = True

    @classmethod
    def from_lengths(cls, lengths, *, smoothing: bool, headroom: float = SMOOTHING_HEADROOM,
                     min_length: int = 0, **kwargs) -> "LengthModel":
        """The empirical model of `lengths` (training + validation) by the reference rule."""
        probs = empirical_length_probs(lengths, smoothing=smoothing, headroom=headroom,
                                       min_length=min_length)
        layer = cls(max_length=len(probs) - 1, **kwargs)
        layer.probs.assign(probs.astype(np.float32))
        return layer

    def log_prob(self, lengths) -> tf.Tensor:
        """log p(T) for int lengths of any shape; -inf outside 0..max_length."""
        lengths = tf.convert_to_tensor(lengths)
        lengths = tf.cast(lengths, tf.int32)
        probs = tf.convert_to_tensor(self.probs)
        inside = (lengths >= 0) & (lengths <= self.max_length)
        p = tf.gather(probs, tf.clip_by_value(lengths, 0, self.max_length))
        return tf.where(inside, tf.math.log(p), tf.constant(-np.inf, probs.dtype))

    def sample(self, n, seed) -> tf.Tensor:
        """int32 [n] lengths drawn from p(T), reproducibly from a stateless `seed` (shape [2])."""
        logits = tf.math.log(tf.convert_to_tensor(self.probs))[tf.newaxis, :]
        return tf.random.stateless_categorical(logits, n, seed=seed, dtype=tf.int32)[0]

    def call(self, lengths):
        return self.log_prob(lengths)

    @classmethod
    def for_model(cls, owner: str, max_length: int, length_model: "LengthModel | None" = None) -> "LengthModel":
        """`length_model` if it covers exactly 0..max_length (a ValueError naming `owner`
        otherwise); a uniform p(T) named "length_model" when it is None."""
        if length_model is None:
            return cls(max_length, name="length_model")
        if length_model.max_length != int(max_length):
            raise ValueError(f"{owner}: length_model.max_length={length_model.max_length} "
                             f"differs from max_length={max_length}")
        return length_model

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length}
