"""What a training checkpoint holds, shared by the trainer and the exporter.

Keras 3 layers kept in Python lists (the LSTM stacks, the flow's MADE and coupling
conditioners, the context MLP kernels) are tracked by Keras (`model.weights`) but not
by TensorFlow's object graph, so `tf.train.Checkpoint(model=model)` silently saves only
part of the model (10 of 52 weights for a paper-size af-af). Checkpoints therefore also
carry a flat list of every model weight in creation order, which a model rebuilt from
the same config recreates in the same order. The optimizer's variables (Adam moments,
iterations) are listed the same way, so they do not depend on the private attribute
names through which Keras happens to track them today.
"""

from __future__ import annotations

__all__ = ["checkpoint_objects", "optimizer_objects"]


def checkpoint_objects(model) -> dict:
    """`model` plus `model_weights`, the list of all of its (built) weights in creation order."""
    if not model.built:
        raise ValueError(f"{model.name} must be built before it is checkpointed "
                         "(its weights do not exist yet)")
    return {"model": model, "model_weights": list(model.weights)}


def optimizer_objects(optimizer) -> dict:
    """`optimizer` plus `optimizer_variables` (iterations, learning rate, Adam moments...)."""
    return {"optimizer": optimizer, "optimizer_variables": list(optimizer.variables)}
