"""The data contract: every bad field is refused with a ValueError naming it."""

import numpy as np
import pandas as pd
import pytest

from seqbench.data import SeqData, TaskSpec
from seqbench.errors import SeqbenchError


def good(n=4, t=5):
    X = np.zeros((n, t), dtype=np.int64)
    Y = np.zeros((n, t), dtype=np.int64)
    mask = np.zeros((n, t), dtype=bool)
    mask[:, -1] = True
    return X, Y, mask


def test_valid_data_infers_sizes():
    X, Y, mask = good()
    X[0, 0] = 6
    Y[1, -1] = 2
    d = SeqData(X, Y, mask)
    assert (d.input_kind, d.target_kind) == ("tokens", "classes")
    assert (d.input_size, d.target_size) == (7, 3)
    assert len(d.meta) == 4 and d.n == 4 and d.T == 5


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda X, Y, m: (X.astype(np.float64), Y, m), "X"),          # 2-D floats
        (lambda X, Y, m: (X, Y.astype(np.float64), m), "Y"),          # 2-D float targets
        (lambda X, Y, m: (X, Y[:, :-1], m), "Y"),                     # T disagrees
        (lambda X, Y, m: (X, Y, m.astype(int)), "mask"),              # not bool
        (lambda X, Y, m: (X, Y, m[:-1]), "mask"),                     # N disagrees
        (lambda X, Y, m: (X, Y, np.zeros_like(m)), "mask"),           # nothing scored
        (lambda X, Y, m: (X - 1, Y, m), "X"),                         # negative token ids
    ],
)
def test_bad_fields_name_the_field(change, field):
    X, Y, mask = change(*good())
    with pytest.raises(ValueError, match=rf"^{field}: expected"):
        SeqData(X, Y, mask)


def test_nan_in_real_inputs_is_refused():
    X = np.zeros((2, 3, 1))
    X[1, 2, 0] = np.nan
    Y = np.zeros((2, 3, 1))
    with pytest.raises(SeqbenchError, match="X: expected finite values, got NaN"):
        SeqData(X, Y, np.ones((2, 3), bool))


def test_nan_in_unscored_targets_is_allowed_but_not_in_scored():
    X = np.zeros((2, 3, 1))
    Y = np.zeros((2, 3, 1))
    Y[:, 0] = np.nan
    mask = np.zeros((2, 3), bool)
    mask[:, 2] = True
    SeqData(X, Y, mask)
    mask[0, 0] = True
    with pytest.raises(SeqbenchError, match="^Y: expected finite values at scored"):
        SeqData(X, Y, mask)


def test_meta_rows_and_declared_sizes_are_checked():
    X, Y, mask = good()
    with pytest.raises(SeqbenchError, match=r"^meta: expected 4 rows"):
        SeqData(X, Y, mask, pd.DataFrame({"lag": [1, 2]}))
    with pytest.raises(SeqbenchError, match=r"^X: expected token ids below input_size 1"):
        SeqData(X + 1, Y, mask, input_size=1)


def test_subset_keeps_sizes_and_meta():
    X, Y, mask = good()
    d = SeqData(X, Y, mask, pd.DataFrame({"lag": [1, 2, 3, 4]}), input_size=9, target_size=5)
    s = d.subset([1, 3])
    assert s.n == 2 and list(s.meta["lag"]) == [2, 4]
    assert (s.input_size, s.target_size) == (9, 5)


def test_taskspec_normalise_maps_chance_to_zero_and_best_to_one():
    spec = TaskSpec("t", 1, "tokens", 5, "classes", 5, "many-to-one", "accuracy", True,
                    chance=0.2, perfect=1.0)
    assert spec.normalise(0.2) == 0.0 and spec.normalise(1.0) == 1.0
    assert spec.normalise(0.6) == pytest.approx(0.5)
    mse = TaskSpec("t", 1, "real", 1, "real", 1, "many-to-one", "mse", False,
                   chance=0.167, oracle=0.01)
    assert mse.normalise(0.01) == pytest.approx(1.0) and mse.normalise(0.167) == 0.0
    with pytest.raises(SeqbenchError, match="TaskSpec.shape: expected one of"):
        TaskSpec("t", 1, "tokens", 5, "classes", 5, "many-to-3", "accuracy", True, chance=0.2)


# -- a split compared with another (valid against train) ------------------------------------
def test_with_sizes_of_takes_inferred_smaller_sizes_up_to_the_reference():
    from seqbench.data import with_sizes_of

    X, Y, mask = good()
    X[0, 0], Y[0, -1] = 5, 3
    train = SeqData(X, Y, mask)  # inferred sizes 6 and 4
    valid = SeqData(*good())  # only id 0 present: inferred sizes 1 and 1
    same = with_sizes_of(valid, train)
    assert (same.input_size, same.target_size) == (6, 4)
    assert same.X is valid.X and same.fingerprint() == valid.fingerprint()  # same arrays
    assert with_sizes_of(train, train) is train  # nothing to change


def test_with_sizes_of_refuses_ids_beyond_the_reference_in_one_line():
    from seqbench.data import with_sizes_of

    X, Y, mask = good()
    train = SeqData(X, Y, mask, input_size=3, target_size=2)
    X2, Y2, _ = good()
    X2[1, 1] = 3
    with pytest.raises(SeqbenchError, match=r"^valid\.X: expected token ids below 3 "
                                            r"\(train's input_size; .*\), got 3$"):
        with_sizes_of(SeqData(X2, Y2, mask), train)
    Y2 = Y.copy()
    Y2[1, -1] = 4
    Y2[2, 0] = 99  # unscored: not looked at, as SeqData does not
    with pytest.raises(SeqbenchError, match=r"^held\.Y: expected class ids below 2 "
                                            r"\(fit's target_size; .*\), got 4$"):
        with_sizes_of(SeqData(X, Y2, mask), train, name="held", reference="fit")
    Y2[1, -1] = 1
    assert with_sizes_of(SeqData(X, Y2, mask), train).target_size == 2


def test_with_sizes_of_needs_equal_real_dimensions():
    from seqbench.data import with_sizes_of

    M = np.ones((2, 3), bool)
    train = SeqData(np.zeros((2, 3, 2)), np.zeros((2, 3, 1)), M)
    with pytest.raises(SeqbenchError, match=r"^valid\.input_size: expected D = 2 as in train"):
        with_sizes_of(SeqData(np.zeros((2, 3, 1)), np.zeros((2, 3, 1)), M), train)
    with pytest.raises(SeqbenchError, match=r"^valid\.target_kind: expected 'real' as in train"):
        with_sizes_of(SeqData(np.zeros((2, 3, 2)), np.zeros((2, 3), np.int64), M), train)
