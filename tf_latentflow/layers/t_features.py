"""T-conditioning features (Ziegler & Rush 2019, appendix D).

Every part of the model is conditioned on the length T through two one-hot
vectors per step t = 0..T-1:

  from_start[t] = t              (distance from the start)
  from_end[t]   = T - 1 - t      (distance from the end)
  features[t]   = concat(one_hot(from_start[t], depth), one_hot(from_end[t], depth))

with depth = T_max of the length model, so valid steps have indices in
0..depth-1. Multiplying the features by a [2*depth, H] matrix W is the same as
the embedding lookup  W_start[from_start[t]] + W_end[from_end[t]]:
`t_feature_rows` computes that form (the layers use it, so no one-hot tensor is
built in training or sampling); `t_indices` gives the indices.

Padding convention: a step t >= T (padding in a batch) has both indices equal to
PAD_INDEX = -1, and therefore all-zero features (tf.one_hot of -1 is zero).
(The reference code instead keeps t and uses index T_max - 1 at padded steps;
those steps are masked out of every loss, so the two agree on valid steps.)

All functions are plain TF ops, usable inside tf.function, tf.while_loop and
SavedModels; `max_steps`, `t` and `lengths` may be tensors.
"""

from __future__ import annotations

import tensorflow as tf

PAD_INDEX = -1


def t_indices(lengths, max_steps) -> tuple[tf.Tensor, tf.Tensor]:
    """(from_start, from_end), each int32 [B, max_steps]; PAD_INDEX at steps t >= T.

    Args:
      lengths: int [B] sequence lengths T.
      max_steps: int scalar, the padded length (e.g. tf.shape(x)[1]).
    """
    lengths = tf.cast(tf.convert_to_tensor(lengths), tf.int32)
    t = tf.range(tf.cast(max_steps, tf.int32), dtype=tf.int32)[tf.newaxis, :]  # [1, T]
    valid = t < lengths[:, tf.newaxis]  # [B, T]
    pad = tf.constant(PAD_INDEX, tf.int32)
    from_start = tf.where(valid, t, pad)
    from_end = tf.where(valid, lengths[:, tf.newaxis] - 1 - t, pad)
    return from_start, from_end


def t_indices_at(t, lengths) -> tuple[tf.Tensor, tf.Tensor]:
    """(from_start, from_end) of the single step t (a scalar), each int32 [B]."""
    lengths = tf.cast(tf.convert_to_tensor(lengths), tf.int32)
    t = tf.cast(t, tf.int32)
    valid = t < lengths
    pad = tf.constant(PAD_INDEX, tf.int32)
    return (tf.where(valid, tf.fill(tf.shape(lengths), t), pad),
            tf.where(valid, lengths - 1 - t, pad))


def _check_depth(lengths, depth, validate_args):
    if not validate_args:
        return []
    lengths = tf.cast(lengths, tf.int32)
    return [tf.debugging.assert_less_equal(
        lengths, tf.cast(depth, tf.int32),
        message="t_features: a length exceeds the one-hot depth (use depth = LengthModel.max_length)")]


def t_features(lengths, max_steps, depth, *, validate_args: bool = True,
               dtype=tf.float32) -> tf.Tensor:
    """float [B, max_steps, 2*depth]: one_hot(t) ++ one_hot(T-1-t); zeros at padding steps.

    With validate_args, a length > depth raises (it would silently give zero
    features); the check is a graph assert, cheap and safe inside tf.function.
    """
    with tf.control_dependencies(_check_depth(lengths, depth, validate_args)):
        from_start, from_end = t_indices(lengths, max_steps)
        return tf.concat([tf.one_hot(from_start, depth, dtype=dtype),
                          tf.one_hot(from_end, depth, dtype=dtype)], axis=-1)


def t_features_at(t, lengths, depth, *, validate_args: bool = True, dtype=tf.float32) -> tf.Tensor:
    """float [B, 2*depth]: the features of the single step t (a scalar) for every sequence.

    Equal to t_features(lengths, max_steps, depth)[:, t] for any max_steps > t;
    meant for step-by-step loops (tf.while_loop samplers).
    """
    with tf.control_dependencies(_check_depth(lengths, depth, validate_args)):
        from_start, from_end = t_indices_at(t, lengths)
        return tf.concat([tf.one_hot(from_start, depth, dtype=dtype),
                          tf.one_hot(from_end, depth, dtype=dtype)], axis=-1)


def t_feature_rows(weights, lengths, max_steps, depth) -> tf.Tensor:
    """t_features(lengths, max_steps, depth) @ weights without the one-hot matrix.

    weights: [2 * depth, N] (the rows of a kernel that multiply the T-features). Returns
    [B, max_steps, N] = weights[t] + weights[depth + T - 1 - t] at valid steps, 0 at
    padding steps: two row gathers instead of a [B, max_steps, 2 * depth] tensor and its
    product (depth is 2 x 2235 for Nottingham, 2 x 4821 for Piano-midi).
    """
    from_start, from_end = t_indices(lengths, max_steps)
    return _rows(weights, from_start, from_end, depth)


def t_feature_rows_at(weights, t, lengths, depth) -> tf.Tensor:
    """[B, N]: t_feature_rows(weights, lengths, max_steps, depth)[:, t] for one step t."""
    from_start, from_end = t_indices_at(t, lengths)
    return _rows(weights, from_start, from_end, depth)


def _rows(weights, from_start, from_end, depth):
    weights = tf.convert_to_tensor(weights)
    valid = from_start >= 0
    start = tf.gather(weights, tf.where(valid, from_start, 0))
    end = tf.gather(weights, tf.where(valid, depth + from_end, 0))
    return (start + end) * tf.cast(valid, weights.dtype)[..., tf.newaxis]
