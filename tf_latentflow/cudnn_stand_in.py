"""A CPU stand-in for TensorFlow's cuDNN LSTM op, to exercise the cuDNN branch without a GPU.

`FastLSTM(recurrence="cudnn")` hands its recurrence to Keras's cuDNN path
(`keras.src.backend.tensorflow.rnn.lstm`), which packs the weights into cuDNN's
parameter layout and calls `tf.raw_ops.CudnnRNNV3`; without a GPU Keras declines
and nothing of that path runs. `cudnn_stand_in()` makes Keras take it on a CPU,
with an op written from cuDNN's canonical layout (below) in place of the kernel:
what the branch hands cuDNN is then checked, the kernel itself is not.
"""

from __future__ import annotations

import contextlib
import importlib

import tensorflow as tf

__all__ = ["cudnn_rnn_v3_stand_in", "cudnn_stand_in"]


def cudnn_rnn_v3_stand_in(calls: list):
    """A stand-in for tf.raw_ops.CudnnRNNV3 (batch-major LSTM, one layer, one direction),
    from cuDNN's canonical parameter layout: the input matrices W_i, W_f, W_c, W_o, each
    [units, input_size] row-major, then the recurrent R_i..R_o [units, units], then the
    4 input biases and the 4 recurrent biases [units]; z_t = W x_t + b_W + R h_{t-1} + b_R.
    Appends to `calls` at each call."""

    def op(input, input_h, input_c, params, sequence_lengths, rnn_mode, is_training, time_major,
           **unused):
        if rnn_mode != "lstm" or time_major or unused:
            raise NotImplementedError(f"stand-in: rnn_mode={rnn_mode}, time_major={time_major}, {unused}")
        _, steps, size = input.shape
        if sequence_lengths is not None and bool(tf.reduce_any(sequence_lengths != steps)):
            raise NotImplementedError("stand-in: every sequence must run the full length")
        calls.append(int(steps))
        units = input_h.shape[-1]
        parts = tf.split(params, [units * size] * 4 + [units * units] * 4 + [units] * 8)
        w = tf.concat([tf.transpose(tf.reshape(p, [units, size])) for p in parts[:4]], axis=1)
        r = tf.concat([tf.transpose(tf.reshape(p, [units, units])) for p in parts[4:8]], axis=1)
        b = tf.concat(parts[8:12], axis=0) + tf.concat(parts[12:], axis=0)
        h, c, outputs = input_h[:, 0], input_c[:, 0], []
        for t in range(steps):
            i, f, g, o = tf.split(tf.matmul(input[:, t], w) + tf.matmul(h, r) + b, 4, axis=-1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            h = tf.sigmoid(o) * tf.tanh(c)
            outputs.append(h)
        return tf.stack(outputs, axis=1), h[:, None], c[:, None], tf.zeros([0]), tf.zeros([0])

    return op


@contextlib.contextmanager
def cudnn_stand_in():
    """Within: Keras's cuDNN path runs (eagerly) with `cudnn_rnn_v3_stand_in` as the op;
    yields the list of its calls (one entry, the number of steps, per call). Restored after."""
    rnn = importlib.import_module("keras.src.backend.tensorflow.rnn")
    calls: list = []
    saved = rnn._is_gpu_available, tf.raw_ops.CudnnRNNV3
    rnn._is_gpu_available, tf.raw_ops.CudnnRNNV3 = (lambda: True), cudnn_rnn_v3_stand_in(calls)
    try:
        yield calls
    finally:
        rnn._is_gpu_available, tf.raw_ops.CudnnRNNV3 = saved
