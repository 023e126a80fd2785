"""A serial loop over time whose weight gradients are one batched product after it.

The IAF-in-time density (paper section 4.3) runs a step function

    (carry_t, out_t) = step(carry_{t-1}, elems_t),      t = 0 .. T-1

in which carry holds the previous noise vector and the LSTM states and out_t
is (eps_t, log-det_t). Automatic differentiation of a `tf.while_loop` adds
every step's weight gradient into accumulators of the full weight size (the
2 x 500 LSTM: ~4M floats) at every step; at batch 5 that traffic made the
backward pass ~8x the forward. `serial_scan` differentiates it the way
cuDNN's LSTM does:

  backward loop, t = T-1 .. 0, carrying only a_t = dL/d carry_t:
      recompute step t, and its vector-Jacobian product w.r.t. its inputs only
      (carry_{t-1}, elems_t) with the cotangents (a_t, dL/d out_t);
      keep (a_t, dL/d out_t); a_{t-1} = the product's carry part
  after the loop, the weights, all T steps at once:
      dL/d theta = sum_t (d step_t / d theta)^T (a_t, dL/d out_t)
                 = one vector-Jacobian product of `step` applied to the
                   T*B rows (carry_{t-1}, elems_t) stacked as one batch

The last line needs `step` to treat batch rows independently and to be
deterministic (dropout masks and T-features are passed in `elems`). The
recomputation costs one extra forward step per step.

`serial_loop` runs the same `step` in a plain `tf.while_loop` that stores
nothing for a backward pass: for evaluation and sampling (it stays
differentiable by TensorFlow's own loop gradient, only slower).
"""

import tensorflow as tf

__all__ = ["serial_loop", "serial_scan"]


def _stack_like(tensors, size, time_major=False):
    """One TensorArray per tensor, for `size` steps of it (of its slices if time_major)."""
    return [tf.TensorArray(t.dtype, size=size, element_shape=t.shape[1:] if time_major else t.shape)
            for t in tensors]


def _merge_rows(x):
    """[T, B, ...] -> [T*B, ...]."""
    return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))


def _flat_step(step, carry_structure, elems_structure):
    """`step` on flat lists of tensors: (flat carry, flat elems_t) -> (flat new carry, flat out_t)."""
    def run_step(flat_c, flat_e):
        carry = tf.nest.pack_sequence_as(carry_structure, list(flat_c))
        elems_t = tf.nest.pack_sequence_as(elems_structure, list(flat_e))
        new_carry, out = step(carry, elems_t)
        return [tf.convert_to_tensor(c) for c in tf.nest.flatten(new_carry)], \
               [tf.convert_to_tensor(o) for o in tf.nest.flatten(out)]
    return run_step


def _forward_loop(run_step, carry0, all_elems, steps, flat_spec, keep_carries, num_steps=None):
    """The loop itself: stacked outputs `[T, B, ...]`, and the carries before each step if kept.

    num_steps: stop after this many steps (clipped to [min(1, T), T]; at least one write,
    so that the stacks fill the steps never computed with zeros); default T.
    """
    limit = steps if num_steps is None else tf.clip_by_value(
        tf.cast(num_steps, tf.int32), tf.minimum(1, steps), steps)
    befores = _stack_like(carry0, steps) if keep_carries else []
    outs = [tf.TensorArray(spec.dtype, size=steps, element_shape=spec.shape) for spec in flat_spec]

    def body(t, carry, befores, outs):
        new_carry, out = run_step(carry, [e[t] for e in all_elems])
        befores = [ta.write(t, c) for ta, c in zip(befores, carry)]
        outs = [ta.write(t, o) for ta, o in zip(outs, out)]
        return t + 1, new_carry, befores, outs

    # maximum_iterations bounds the loop for XLA (the exported samplers compile it).
    _, _, befores, outs = tf.while_loop(lambda t, *_: t < limit, body, (0, carry0, befores, outs),
                                        maximum_iterations=steps)
    return [ta.stack() for ta in outs], [ta.stack() for ta in befores]


def serial_loop(step, initial_carry, elems, output_spec, num_steps=None):
    """`serial_scan`'s forward pass alone: a plain `tf.while_loop`, same arguments and result.

    num_steps: for sampling: run only the first num_steps steps (at least one); the
    outputs of the later ones are zeros (a sampler's padding, never computed).
    """
    flat_carry0 = [tf.convert_to_tensor(c) for c in tf.nest.flatten(initial_carry)]
    flat_elems = [tf.convert_to_tensor(e) for e in tf.nest.flatten(elems)]
    run_step = _flat_step(step, initial_carry, elems)
    flat_outs, _ = _forward_loop(run_step, flat_carry0, flat_elems, tf.shape(flat_elems[0])[0],
                                 tf.nest.flatten(output_spec), keep_carries=False, num_steps=num_steps)
    return tf.nest.pack_sequence_as(output_spec, flat_outs)


def serial_scan(step, initial_carry, elems, output_spec):
    """Run `step` over time-major `elems`; returns the outputs stacked `[T, B, ...]`.

    Args:
      step: `(carry, elems_t) -> (new_carry, out_t)`, nests of `[B, ...]` tensors;
        new_carry has the structure of carry. Must be row-wise and deterministic
        (module docstring); it may read trainable variables, whose gradients come
        from one batched vector-Jacobian product.
      initial_carry: a nest of `[B, ...]` tensors.
      elems: a nest of time-major `[T, B, ...]` tensors.
      output_spec: the nest of `tf.TensorSpec` of out_t (shapes with the batch axis).

    Gradients flow to `initial_carry`, `elems` and the variables `step` reads.
    """
    flat_carry0 = [tf.convert_to_tensor(c) for c in tf.nest.flatten(initial_carry)]
    flat_elems = [tf.convert_to_tensor(e) for e in tf.nest.flatten(elems)]
    num_carry = len(flat_carry0)
    steps = tf.shape(flat_elems[0])[0]
    run_step = _flat_step(step, initial_carry, elems)
    flat_spec = tf.nest.flatten(output_spec)

    @tf.custom_gradient
    def scan(*flat_inputs):
        carry0, all_elems = list(flat_inputs[:num_carry]), list(flat_inputs[num_carry:])
        stacked_outs, befores = _forward_loop(run_step, carry0, all_elems, steps, flat_spec,
                                              keep_carries=True)

        def grad(*d_outs, variables=None):
            d_outs = [tf.zeros_like(o) if d is None else d for d, o in zip(d_outs, stacked_outs)]
            d_carries = _stack_like(carry0, steps)
            d_elems = _stack_like(all_elems, steps, time_major=True)

            def back(t, d_carry, d_carries, d_elems):
                before, elems_t = [b[t] for b in befores], [e[t] for e in all_elems]
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(before + elems_t)
                    new_carry, out = run_step(before, elems_t)
                grads = tape.gradient(new_carry + out, before + elems_t,
                                      output_gradients=d_carry + [d[t] for d in d_outs],
                                      unconnected_gradients=tf.UnconnectedGradients.ZERO)
                d_carries = [ta.write(t, d) for ta, d in zip(d_carries, d_carry)]
                d_elems = [ta.write(t, g) for ta, g in zip(d_elems, grads[num_carry:])]
                return t - 1, grads[:num_carry], d_carries, d_elems

            d_last = [tf.zeros_like(c) for c in carry0]
            _, d_carry0, d_carries, d_elems = tf.while_loop(
                lambda t, *_: t >= 0, back, (steps - 1, d_last, d_carries, d_elems),
                maximum_iterations=steps)
            d_elems = [ta.stack() for ta in d_elems]
            input_grads = list(d_carry0) + d_elems
            if not variables:  # custom_gradient then expects the input gradients alone
                return input_grads
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(variables)
                new_carry, out = run_step([_merge_rows(b) for b in befores],
                                          [_merge_rows(e) for e in all_elems])
            cotangents = [_merge_rows(ta.stack()) for ta in d_carries] + [_merge_rows(d) for d in d_outs]
            variable_grads = tape.gradient(new_carry + out, variables, output_gradients=cotangents,
                                           unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return input_grads, variable_grads

        return stacked_outs, grad

    flat_outs = scan(*flat_carry0, *flat_elems)
    return tf.nest.pack_sequence_as(output_spec, list(flat_outs))
