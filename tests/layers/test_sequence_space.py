"""SequenceSpace: the one check of (max_length, vocab_size, num_notes) that the inference
network, the emission and both models share, and LengthModel.for_model."""

import numpy as np
import pytest

from tf_latentflow.baseline import LSTMBaseline
from tf_latentflow.layers import Emission, InferenceNetwork, LengthModel, SequenceSpace
from tf_latentflow.model import LatentFlowVAE


def test_text_and_music_spaces():
    text = SequenceSpace.checked("X", 12.0, vocab_size=np.int64(7))
    assert (text.max_length, text.vocab_size, text.num_notes) == (12, 7, None)
    assert text.is_text and text.num_outputs == 7 and isinstance(text.max_length, int)
    music = SequenceSpace(5, num_notes=88)
    assert not music.is_text and music.num_outputs == 88
    with pytest.raises(AttributeError):
        music.max_length = 6  # frozen


@pytest.mark.parametrize("arguments, message", [
    (dict(max_length=4, vocab_size=3, num_notes=4), "give exactly one of vocab_size"),
    (dict(max_length=4), "give exactly one of vocab_size"),
    (dict(max_length=0, num_notes=4), "max_length must be >= 1"),
    (dict(max_length=None, num_notes=4), "max_length .>= 1. is required"),
    (dict(max_length=4, vocab_size=0), "vocab_size / num_notes must be >= 1"),
])
@pytest.mark.parametrize("owner", [InferenceNetwork, Emission, LatentFlowVAE, LSTMBaseline])
def test_every_owner_rejects_a_space_that_is_not_one_and_names_itself(owner, arguments, message):
    with pytest.raises(ValueError, match=f"^{owner.__name__}: {message}"):
        owner(**arguments)


@pytest.mark.parametrize("owner", [LatentFlowVAE, LSTMBaseline])
def test_the_models_take_a_length_model_of_their_max_length_only(owner):
    own = LengthModel(6, name="p_t")
    small = dict(hidden_units=8, embedding_size=8)
    if owner is LatentFlowVAE:
        small.update(latent_size=2, prior_lstm_units=8, flow_hidden_units=(4,), num_flow_layers=1)
    model = owner(6, num_notes=3, length_model=own, **small)
    assert model.length_model is own
    assert owner(6, num_notes=3, **small).length_model.max_length == 6
    with pytest.raises(ValueError, match=f"^{owner.__name__}: length_model.max_length=5 differs"):
        owner(6, num_notes=3, length_model=LengthModel(5), **small)


def test_a_default_length_model_is_uniform_over_zero_to_max_length():
    made = LengthModel.for_model("X", 3)
    assert made.name == "length_model"
    assert made.probs.numpy().tolist() == [0.25] * 4
