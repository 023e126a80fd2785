"""What one step of a modelled sequence is, and how long a sequence may be.

A step is either a token id of a vocabulary of V symbols (text: x_t in {0..V-1},
a Categorical over V outputs) or a frame of N notes (music: x_t in {0, 1}^N, N
Bernoullis), and every sequence has 1 <= T <= max_length steps. The inference
network, the emission and both models take these three arguments; `checked`
validates them once for all of them.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class SequenceSpace:
    """The steps of the sequences a layer reads or emits.

    Attributes:
      max_length: the longest T (>= 1).
      vocab_size: V for text, else None.
      num_notes: N for music, else None. Exactly one of the two is given.
    """

    max_length: int
    vocab_size: int | None = None
    num_notes: int | None = None

    def __post_init__(self):
        if (self.vocab_size is None) == (self.num_notes is None):
            raise ValueError("give exactly one of vocab_size (text) and num_notes (music)")
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")
        if self.num_outputs < 1:
            raise ValueError(f"vocab_size / num_notes must be >= 1, got {self.num_outputs}")

    @classmethod
    def checked(cls, owner: str, max_length, vocab_size=None, num_notes=None) -> SequenceSpace:
        """The space of these arguments, cast to int; a ValueError naming `owner` if they
        do not describe one (max_length missing or < 1, not exactly one of V and N)."""
        if max_length is None:
            raise ValueError(f"{owner}: max_length (>= 1) is required, got None")
        try:
            return cls(int(max_length), None if vocab_size is None else int(vocab_size),
                       None if num_notes is None else int(num_notes))
        except ValueError as error:
            raise ValueError(f"{owner}: {error}") from None

    @property
    def is_text(self) -> bool:
        """True for token ids (a Categorical per step), False for note frames."""
        return self.vocab_size is not None

    @property
    def num_outputs(self) -> int:
        """Logits per step: V for text, N for music."""
        return self.vocab_size if self.vocab_size is not None else self.num_notes
