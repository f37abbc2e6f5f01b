"""Validation of probe inputs (shapes, labels, standardisers, seeds): ValueError naming the problem."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.preprocessing import StandardScaler


def sk_seed(seed: int) -> int:
    """Map any integer seed into the range sklearn and numpy accept."""
    return int(seed) % (2 ** 32)


def as_matrix(name: str, array: np.ndarray) -> np.ndarray:
    """A float64 2-D copy of array; ValueError naming the argument otherwise."""
    out = np.asarray(array, dtype=np.float64)
    if out.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {list(out.shape)}")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return out


def check_inputs(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 class_names: Sequence[str], multi_label: bool) -> None:
    """Raise ValueError unless shapes agree and labels are 0/1 (one-hot when multi-class)."""
    if train_x.shape[0] != train_y.shape[0]:
        raise ValueError(f"train_x has {train_x.shape[0]} rows but train_y has {train_y.shape[0]}")
    if test_x.shape[0] != test_y.shape[0]:
        raise ValueError(f"test_x has {test_x.shape[0]} rows but test_y has {test_y.shape[0]}")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train_x has D={train_x.shape[1]} but test_x has D={test_x.shape[1]}")
    n_classes = len(class_names)
    for name, y in (("train_y", train_y), ("test_y", test_y)):
        if y.shape[1] != n_classes:
            raise ValueError(f"{name} has {y.shape[1]} columns but there are {n_classes} class_names")
        if not np.all((y == 0) | (y == 1)):
            raise ValueError(f"{name} must contain only 0 and 1")
        if not multi_label and not np.all(y.sum(axis=1) == 1):
            raise ValueError(f"{name} must be one-hot for a multi-class probe (one 1 per row)")
    if not multi_label and n_classes < 2:
        raise ValueError("a multi-class probe needs at least 2 classes")
    if train_x.shape[0] < 2 or test_x.shape[0] < 1:
        raise ValueError(f"need at least 2 training and 1 test rows, got {train_x.shape[0]} and {test_x.shape[0]}")


def check_trainable(train_y: np.ndarray, class_names: Sequence[str], multi_label: bool) -> None:
    """Raise ValueError naming a class the probe cannot learn (no positives, or no negatives)."""
    positives = train_y.sum(axis=0)
    for k, name in enumerate(class_names):
        if positives[k] == 0:
            raise ValueError(f"class {name!r} has no training samples; a probe cannot learn it "
                             "(drop the class or use a larger training subset)")
        if multi_label and positives[k] == train_y.shape[0]:
            raise ValueError(f"class {name!r} is positive in every training record; a probe cannot learn it")


def check_regression(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                     class_names: Sequence[str], multi_label: bool) -> None:
    """ValueError unless shapes agree for a regression probe."""
    if multi_label:
        raise ValueError("multi_label must be false for a regression probe")
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{name}_x has {x.shape[0]} rows but {name}_y has {y.shape[0]}")
        if y.shape[1] != len(class_names) or not class_names:
            raise ValueError(f"{name}_y has {y.shape[1]} columns but there are {len(class_names)} target names")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train_x has D={train_x.shape[1]} but test_x has D={test_x.shape[1]}")
    if train_x.shape[0] < 3 or test_x.shape[0] < 1:
        raise ValueError(f"need at least 3 training and 1 test rows, got {train_x.shape[0]} and {test_x.shape[0]}")


def prepare(train_x, train_y, test_x, test_y, class_names, multi_label: bool,
            target_type: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Validated float64 inputs; ValueError naming the problem."""
    train_x, train_y = as_matrix("train_x", train_x), as_matrix("train_y", train_y)
    test_x, test_y = as_matrix("test_x", test_x), as_matrix("test_y", test_y)
    names = [str(name) for name in class_names]
    if target_type == "regression":
        check_regression(train_x, train_y, test_x, test_y, names, multi_label)
    else:
        check_inputs(train_x, train_y, test_x, test_y, names, multi_label)
        check_trainable(train_y, names, multi_label)
    return train_x, train_y, test_x, test_y, names


def check_standardiser(standardiser: tuple[np.ndarray, np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], scale [D]) as float64; ValueError unless shapes match and every scale is finite and > 0."""
    mean, scale = (np.asarray(a, dtype=np.float64).reshape(-1) for a in standardiser)
    if mean.shape != (dim,) or scale.shape != (dim,):
        raise ValueError(f"standardiser mean/scale must have D={dim} entries, got {mean.size} and {scale.size}")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
        raise ValueError("standardiser mean must be finite and scale finite and > 0")
    return mean, scale


def standardiser_for(train_x: np.ndarray,
                     given: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """The given (mean, scale) checked, or the training split's."""
    if given is not None:
        return check_standardiser(given, train_x.shape[1])
    scaler = StandardScaler().fit(train_x)
    return scaler.mean_.copy(), scaler.scale_.copy()
