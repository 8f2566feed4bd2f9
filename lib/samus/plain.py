"""Plain Python values for files: numpy scalars and arrays, and for JSON non-finite floats and paths."""
import math
from pathlib import Path

import numpy as np


def finite_or_none(value):
    """None for a float that is NaN or infinite (JSON has no such numbers), else `value`."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def to_plain(value, for_json: bool = False):
    """`value` with numpy scalars and arrays as Python numbers and lists, tuples as lists. With `for_json`
    also dict keys as strings, paths as strings and non-finite floats as None."""
    if isinstance(value, dict):
        return {(str(k) if for_json else k): to_plain(v, for_json) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v, for_json) for v in value]
    if isinstance(value, np.generic):
        return to_plain(value.item(), for_json)
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist(), for_json)
    if for_json and isinstance(value, Path):
        return str(value)
    return finite_or_none(value) if for_json else value
