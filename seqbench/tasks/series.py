"""One-step-ahead forecasting of real annual series shipped with the package.

* ``nile``: annual flow of the river Nile at Aswan, 1871-1970 (100 values, 10^8 m^3);
  Cobb (1978), *Biometrika* 65(2):243-251; the local-level example of Durbin &
  Koopman (2012), *Time Series Analysis by State Space Methods*.
* ``sunspots``: yearly mean sunspot numbers, 1700-2008 (309 values); NOAA National
  Geophysical Data Center.

The data files are ``seqbench/datasets/*.csv`` (see :func:`seqbench.datasets.load_series`).

Exact definition
----------------
The series ``y_0..y_{n-1}`` (in year order) is cut into three consecutive regions:
training ``[0, n_tr)``, validation ``[n_tr, n_va)`` and test ``[n_va, n)``, with
``n_tr = round(train_frac * n)`` and ``n_va = round((train_frac + valid_frac) * n)``
(70 / 15 / 15 by default: Nile 70 / 15 / 15 years, sunspots 216 / 47 / 46 years).
Each split is one sequence with ``X[t] = y_t`` and ``Y[t] = y_{t+1}`` (a forecasting
task), and no split carries an input from a region after the one it scores:

* train: ``y_0..y_{n_tr-1}``, every step scored (targets ``y_1..y_{n_tr-1}``);
* valid: ``y_0..y_{n_va-1}``, only the forecasts of the validation years scored;
* test: the whole series, only the forecasts of the test years scored (the
  earlier years are the history the model conditions on).

With ``standardise=True`` (the default) inputs and targets are ``(y - m) / s``
with ``m`` and ``s`` the mean and standard deviation (ddof 0) of the training
region only, so models see numbers of order one (models are not required to
rescale their inputs); the primary metric, ``mse``, is then in standardised units,
and ``mse_original_scale`` (= ``mse * s^2``) reports it in the data's units.

A real series has no seed: ``splits`` gives the same three sequences for every seed
and ignores the requested sizes (each split is one sequence), except that
``n_valid=0`` gives no validation set (``None``; the validation years stay unused).
:meth:`sample` draws ``n`` windows of ``n_tr // 2 + 1`` values at random start years
inside the training region only (for exploration; :meth:`splits` does not use it).

Chance: the MSE on the test years of the best input-blind constant chosen on the
training data, the mean of the training targets (exact, from the data). No oracle
is known for real data. ``extra_metrics`` adds ``persistence_mse`` (the MSE of the
no-change forecast ``y_{t+1} = y_t`` on the same positions) and Theil's
``theil_u = sqrt(mse / persistence_mse)`` (below 1 beats persistence).
"""

from __future__ import annotations

from functools import cache
from typing import ClassVar

import numpy as np
import pandas as pd

from ..data import SeqData, TaskSpec
from ..datasets import load_series
from .base import Task, is_number


@cache
def _load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(years, values)`` of a shipped series, read once per process (read-only arrays)."""
    series = load_series(name)
    years, values = series.index.to_numpy(int), series.to_numpy(float)
    years.flags.writeable = values.flags.writeable = False
    return years, values


class SeriesForecast(Task):
    """One-step-ahead forecasting of a shipped annual series (see the module docstring).

    Parameters
    ----------
    train_frac, valid_frac : fractions of the years in the training and validation
        regions; the test region is the rest.
    standardise : scale by the training region's mean and standard deviation.

    Meta columns
    ------------
    One row per sequence, ints, calendar years (neither is a slice: ``score`` reports
    no slices for these tasks):

    first_year : the year of the sequence's first input value. Every split starts at
        the series' first year (1871 for the Nile, 1700 for sunspots); a window drawn by
        :meth:`sample` starts at its own year.
    last_input_year : the year of the sequence's last input value ``X[-1]``, whose
        target is the next year's value: 1939 / 1954 / 1969 for the Nile's train / valid
        / test splits at the defaults, 1914 / 1961 / 2007 for sunspots. Only the splits
        carry it; :meth:`sample`'s windows have ``first_year`` alone.
    """

    series: ClassVar[str] = ""
    version = 1

    def __init__(
        self, train_frac: float = 0.7, valid_frac: float = 0.15, standardise: bool = True
    ) -> None:
        self.train_frac = train_frac
        self.valid_frac = valid_frac
        self.standardise = standardise

    def check(self) -> None:
        for p in ("train_frac", "valid_frac"):
            value = getattr(self, p)
            self._require(is_number(value) and 0 < value < 1, p, "a fraction in (0, 1)")
        self._require(isinstance(self.standardise, bool), "standardise", "true or false")
        n = len(_load(self.series)[1])
        n_tr, n_va = self.cuts()
        self._require(n_tr >= 3 and n_va - n_tr >= 1 and n - n_va >= 1, "valid_frac",
                      f"fractions leaving >= 3 training years and >= 1 validation and test "
                      f"year of {n} (train_frac={self.train_frac})")

    # -- the data -----------------------------------------------------------------------
    def raw(self) -> pd.Series:
        """The series on its original scale (a pandas Series indexed by year)."""
        years, values = _load(self.series)
        return pd.Series(values.copy(), index=years.copy(), name=self.series)

    def cuts(self) -> tuple[int, int]:
        """``(n_tr, n_va)``: the first validation index and the first test index."""
        n = len(_load(self.series)[1])
        return int(round(self.train_frac * n)), int(round((self.train_frac + self.valid_frac) * n))

    def scale(self) -> tuple[float, float]:
        """``(m, s)`` applied as ``(y - m) / s``: training-region mean and std, or (0, 1)."""
        if not self.standardise:
            return 0.0, 1.0
        y = _load(self.series)[1][: self.cuts()[0]]
        return float(y.mean()), float(y.std())

    def values(self) -> np.ndarray:
        """The series as the models see it, (n,)."""
        m, s = self.scale()
        return (_load(self.series)[1] - m) / s

    def _sequence(self, end: int, first_scored: int) -> SeqData:
        """One sequence on ``y_0..y_{end-1}`` scoring the forecasts of years ``>= first_scored``."""
        y = self.values()[:end]
        years = _load(self.series)[0]
        X, Y = y[:-1], y[1:]  # X[t] = y_t, Y[t] = y_{t+1}
        mask = np.arange(1, end) >= first_scored  # Y[t] is the value of year index t + 1
        meta = pd.DataFrame({"first_year": [int(years[0])],
                             "last_input_year": [int(years[end - 2])]})
        return SeqData(X[None, :, None], Y[None, :, None], mask[None], meta,
                       input_size=1, target_size=1, forecasting=True)

    # -- task API ----------------------------------------------------------------------
    def spec(self) -> TaskSpec:
        self.check()
        train, _, test = self.splits()
        mean = train.Y[train.mask].mean()  # the best constant chosen on the training data
        chance = float(np.mean((test.Y[test.mask] - mean) ** 2))
        return TaskSpec(
            name=self.name, version=self.version,
            input_kind="real", input_size=1, target_kind="real", target_size=1,
            shape="many-to-many-synced", metric="mse", higher_is_better=False,
            chance=chance, oracle=None, perfect=0.0, forecasting=True,
            description=f"one-step-ahead forecasting of the {self.series} series "
                        f"({'standardised on the training years' if self.standardise else 'raw'})",
        )

    def splits(self, seed: int = 0, n_train: int | None = None, n_valid: int | None = None,
               n_test: int | None = None) -> tuple[SeqData, SeqData, SeqData]:
        """Train, valid, test: one sequence each, independent of ``seed`` and the sizes,
        except that ``n_valid=0`` gives ``None`` for the validation set. The seed is still
        checked, as every task's is."""
        self.check()
        self._check_seed(seed)
        n = len(_load(self.series)[1])
        n_tr, n_va = self.cuts()
        valid = None if n_valid == 0 else self._sequence(n_va, n_tr)
        return self._sequence(n_tr, 1), valid, self._sequence(n, n_va)

    def _sample(self, n: int, rng: np.random.Generator) -> SeqData:
        n_tr, _ = self.cuts()
        w = n_tr // 2 + 1  # values per window: w - 1 forecasts
        y = self.values()[:n_tr]
        starts = rng.integers(0, n_tr - w + 1, size=n)
        win = y[starts[:, None] + np.arange(w)]  # (N, w)
        years = _load(self.series)[0]
        meta = pd.DataFrame({"first_year": years[starts]})
        return SeqData(win[:, :-1, None], win[:, 1:, None], np.ones((n, w - 1), dtype=bool), meta,
                       input_size=1, target_size=1, forecasting=True)

    def extra_metrics(self, data: SeqData, pred: np.ndarray, proba) -> dict[str, float]:
        m = data.mask
        mse = float(np.mean((pred[m] - data.Y[m]) ** 2))
        persistence = float(np.mean((data.X[m] - data.Y[m]) ** 2))  # y_{t+1} forecast as y_t
        s = self.scale()[1]
        out = {"mse_original_scale": mse * s**2, "persistence_mse": persistence}
        if persistence > 0:
            out["theil_u"] = float(np.sqrt(mse / persistence))
        return out


class Nile(SeriesForecast):
    __doc__ = ("Forecast the Nile's annual flow at Aswan (1871-1970) one year ahead.\n\n"
               + SeriesForecast.__doc__)
    name = "nile"
    series = "nile"


class Sunspots(SeriesForecast):
    __doc__ = ("Forecast the yearly mean sunspot number (1700-2008) one year ahead.\n\n"
               + SeriesForecast.__doc__)
    name = "sunspots"
    series = "sunspots"
