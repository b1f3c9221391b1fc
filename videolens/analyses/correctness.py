"""What "correct" means, in one place, for every analysis and the command line.

The paper counts a multiple-choice answer as correct when the model's top-1 next token at
the last prompt position (the first answer token) decodes to the true option's letter,
compared case-insensitively ("Map the Flow", Sec. 3: accuracy of the predicted option
letter). videolens uses that definition everywhere: the information-flow sweeps, the
layer-wise answer probability, the effective pathways, the toy model's accuracy table.

Clean accuracy (``base_accuracy``) is always taken over every sample the analysis saw,
before ``sample_mode`` keeps only the correct or wrong ones; ``n_analysed`` says how many
were kept. (The reference code takes it before filtering in one script and after in
another, where it is 100% by construction.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def decoded_letter(tokenizer: Any, token_id: int) -> str:
    """The text of one token with surrounding whitespace removed (``"▁B"`` -> ``"B"``)."""
    return tokenizer.decode([int(token_id)]).strip()


def is_correct(tokenizer: Any, token_id: int, true_letter: str) -> bool:
    """Whether the predicted token is the true option's letter (case-insensitive)."""
    return decoded_letter(tokenizer, token_id).lower() == true_letter.strip().lower()


@dataclass
class AccuracyCounter:
    """Counts clean answers over every sample seen and how many an analysis kept."""

    n_samples: int = 0
    n_correct: int = 0
    n_analysed: int = 0

    def add(self, correct: bool, analysed: bool) -> None:
        self.n_samples += 1
        self.n_correct += bool(correct)
        self.n_analysed += bool(analysed)

    @property
    def base_accuracy(self) -> float:
        """Clean accuracy in percent over every sample seen (NaN when none was seen)."""
        return 100 * self.n_correct / self.n_samples if self.n_samples else float("nan")

    def attrs(self) -> dict[str, float | int]:
        """What analyses store in ``df.attrs``."""
        return {"n_samples": self.n_samples, "n_analysed": self.n_analysed, "base_accuracy": self.base_accuracy}
