"""Small real data sets shipped inside the package (no downloads at run time).

* ``nile``: annual flow of the river Nile at Aswan, 1871-1970 (100 values, 10^8 m^3);
  Cobb (1978), the classic local-level example of Durbin & Koopman (2012).
* ``sunspots``: yearly mean sunspot numbers, 1700-2008 (309 values); NOAA NGDC.

Both are public domain; each CSV file's header lines cite its source.
"""

from __future__ import annotations

from importlib.resources import files

import pandas as pd

from ..errors import SeqbenchError

SERIES = ("nile", "sunspots")


def load_series(name: str) -> pd.Series:
    """The named series as a float Series indexed by year."""
    if name not in SERIES:
        raise SeqbenchError(f"unknown series {name!r}; available: {', '.join(SERIES)}")
    with files(__name__).joinpath(f"{name}.csv").open() as f:
        df = pd.read_csv(f, comment="#")
    return pd.Series(df["value"].to_numpy(float), index=df["year"].to_numpy(int), name=name)
