"""Input-blind baselines: what a model scores when it ignores the inputs."""

from __future__ import annotations

import numpy as np

from ..data import SeqData
from ..errors import SeqbenchError
from .base import SeqModel


class ChanceBaseline(SeqModel):
    """Ignores the inputs: predicts the training targets' marginal at scored positions.

    Class targets: ``strategy="prior"`` predicts the most frequent class with the
    training class frequencies as probabilities; ``strategy="uniform"`` gives every
    class the same probability (ties broken towards the lowest id). Real targets:
    the mean of the scored training targets. It predicts the same at every step, so its
    score is the task's empirical chance level where that level is position-blind (one
    scored step, or targets whose marginal does not depend on the step). Where the
    task's analytic chance is that of a predictor that knows the step index (copy memory
    with ``scored="all"``: certain blanks, then uniform symbols), this model scores worse
    than that ``chance`` column.
    """

    _tags = {"deterministic": True}

    def __init__(self, strategy: str = "prior") -> None:
        self.strategy = strategy

    def _check_params(self) -> None:
        if self.strategy not in ("prior", "uniform"):
            raise SeqbenchError(f"ChanceBaseline parameter 'strategy': expected 'prior' or "
                                f"'uniform', got {self.strategy!r}")

    def _fit(self, data: SeqData, valid: SeqData | None) -> None:
        self._check_params()
        if data.target_kind == "classes":
            counts = np.bincount(data.Y[data.mask], minlength=data.target_size).astype(float)
            if self.strategy == "uniform":
                counts[:] = 1.0
            self.prior_ = counts / counts.sum()  # (K,)
        else:
            self.mean_ = data.Y[data.mask].mean(axis=0)  # (K,)

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        N, T = X.shape[:2]
        return np.broadcast_to(self.prior_, (N, T, len(self.prior_))).copy()  # (N, T, K)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        N, T = X.shape[:2]
        if self.target_kind_ == "classes":
            return np.full((N, T), int(np.argmax(self.prior_)), dtype=np.int64)
        return np.broadcast_to(self.mean_, (N, T, len(self.mean_))).copy()  # (N, T, K)

    def _n_parameters(self) -> int:
        return int(self.target_size_)
