"""What a training checkpoint holds, shared by the trainer and the exporter.

Keras 3 layers kept in Python lists (the LSTM stacks, the flow's MADE and coupling
conditioners, the context MLP kernels) are tracked by Keras (`model.weights`) but not
by TensorFlow's object graph, so `tf.train.Checkpoint(model=model)` silently saves only
part of the model (10 of 52 weights for a paper-size af-af). Checkpoints therefore also
carry every model weight keyed by its Keras path below the model (`model_variables`,
e.g. "prior/hidden_flow/coupling_net_3/kernel_0"), so that two weights of
the same shape (the forward and backward LSTMs, the layers of a flow stack) can never
trade places, whatever order a rebuilt model creates them in. Every restore is checked
against the model: a weight of the model the checkpoint lacks, or a stored weight the
model has no place for, is an `IncompleteCheckpointError` that lists them.

Checkpoints written before the weights were keyed (`model_weights`, a list in creation
order) are still read, by that order (`checkpoint_layout` tells which a file has).

The optimizer's variables (Adam moments, iterations) are listed in the optimizer's own
order (`optimizer_variables`), so they do not depend on the private attribute names
through which Keras happens to track them today.
"""

from __future__ import annotations

import collections

import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

__all__ = ["IncompleteCheckpointError", "WEIGHTS_KEY", "LEGACY_WEIGHTS_KEY", "checkpoint_layout",
           "checkpoint_objects", "check_model_weights", "optimizer_objects", "weights_by_path"]

WEIGHTS_KEY = "model_variables"
LEGACY_WEIGHTS_KEY = "model_weights"


class IncompleteCheckpointError(RuntimeError):
    """The checkpoint does not match the model weight for weight (restoring it would run
    with partly untrained weights, or drop trained ones)."""


def weights_by_path(model) -> dict:
    """{path below the model: weight} of every (built) weight of `model`; keys must be unique."""
    if not model.built:
        raise ValueError(f"{model.name} must be built before it is checkpointed "
                         "(its weights do not exist yet)")
    keys = [_key(model, w) for w in model.weights]
    duplicated = sorted(key for key, n in collections.Counter(keys).items() if n > 1)
    if duplicated:
        raise ValueError(f"{model.name}: weight paths are not unique, so a checkpoint keyed by "
                         f"them would be ambiguous: {duplicated[:5]}")
    return dict(zip(keys, model.weights))


def _key(model, weight) -> str:
    """The weight's path below the model ("prior/hidden_flow/made_0/kernel_0"): without the
    model's own name, which Keras numbers per process ("latent_flow_vae_1")."""
    prefix = model.name + "/"
    return weight.path[len(prefix):] if weight.path.startswith(prefix) else weight.path


def checkpoint_objects(model, layout: str = "named") -> dict:
    """`model` plus its weights: keyed by path ("named") or in creation order ("legacy",
    to read a checkpoint written before the weights were keyed)."""
    if layout == "legacy":
        weights_by_path(model)  # the same checks
        return {"model": model, LEGACY_WEIGHTS_KEY: list(model.weights)}
    if layout != "named":
        raise ValueError(f"layout must be 'named' or 'legacy', got {layout!r}")
    return {"model": model, WEIGHTS_KEY: weights_by_path(model)}


def optimizer_objects(optimizer) -> dict:
    """`optimizer` plus `optimizer_variables` (iterations, learning rate, Adam moments...)."""
    return {"optimizer": optimizer, "optimizer_variables": list(optimizer.variables)}


def _stored_children(path, root_child: str):
    """{key: shape} of the values under the root object's child `root_child` in checkpoint
    `path`, read from its object graph (a variable reachable by several paths is stored
    under one name only, so the names of the stored tensors alone would miss some), or
    None when the root has no such child."""
    reader = tf.train.load_checkpoint(str(path))
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    root = {child.local_name: child.node_id for child in graph.nodes[0].children}
    if root_child not in root:
        return None
    shapes = reader.get_variable_to_shape_map()
    out = {}
    for child in graph.nodes[root[root_child]].children:
        attributes = graph.nodes[child.node_id].attributes
        value = next((a.checkpoint_key for a in attributes if a.name == "VARIABLE_VALUE"), None)
        out[child.local_name] = tuple(shapes[value]) if value in shapes else None
    return out


def checkpoint_layout(path) -> str:
    """"named" (weights keyed by path), "legacy" (a list in creation order) or "none"."""
    if _stored_children(path, WEIGHTS_KEY) is not None:
        return "named"
    return "legacy" if _stored_children(path, LEGACY_WEIGHTS_KEY) is not None else "none"


def check_model_weights(path, model) -> str:
    """Check that checkpoint `path` holds exactly `model`'s weights, with their shapes.

    Returns the layout ("named" or "legacy"). Raises IncompleteCheckpointError listing the
    missing, unexpected and mis-shaped weights.
    """
    layout = checkpoint_layout(path)
    if layout == "none":
        raise IncompleteCheckpointError(
            f"{path} holds no list of the model's weights ({WEIGHTS_KEY} or {LEGACY_WEIGHTS_KEY}): "
            f"it was not written by this project's trainer, or only `model` was saved, which "
            f"misses the layers kept in Python lists")
    if layout == "named":
        saved = _stored_children(path, WEIGHTS_KEY)
        wanted = {key: tuple(w.shape) for key, w in weights_by_path(model).items()}
    else:
        saved = {int(k): shape for k, shape in _stored_children(path, LEGACY_WEIGHTS_KEY).items()}
        wanted = {i: tuple(w.shape) for i, w in enumerate(model.weights)}
    missing = sorted(set(wanted) - set(saved), key=str)
    unexpected = sorted(set(saved) - set(wanted), key=str)
    misshaped = sorted((k for k in set(wanted) & set(saved) if wanted[k] != saved[k]), key=str)
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} weights of the model are not in it: {missing[:8]}")
        if unexpected:
            parts.append(f"{len(unexpected)} stored weights have no place in the model: "
                         f"{unexpected[:8]}")
        if misshaped:
            parts.append("shapes differ: " + ", ".join(
                f"{k} {saved[k]} (stored) vs {wanted[k]} (model)" for k in misshaped[:8]))
        raise IncompleteCheckpointError(
            f"{path} does not match the model ({len(wanted)} weights, {layout} checkpoint): "
            + "; ".join(parts) + ". Was the run made with other settings or another version?")
    return layout
