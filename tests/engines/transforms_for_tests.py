"""Python callables that the transform tests name by dotted path."""

from __future__ import annotations

from typing import Any

import pandas as pd


def add_spend_band(frame: pd.DataFrame) -> pd.DataFrame:
    """Label each user's total spend: ``high`` from 100 up, else ``low``."""
    banded = frame.copy()
    banded["band"] = ["high" if total >= 100 else "low" for total in banded["total"]]
    return banded


def count_frames(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per input frame with its row count (proves the dict of several inputs)."""
    return pd.DataFrame({"dataset": sorted(frames), "rows": [len(frames[name]) for name in sorted(frames)]})


def double_amount(frame: pd.DataFrame) -> pd.DataFrame:
    doubled = frame.copy()
    doubled["amount"] = doubled["amount"] * 2
    return doubled


def not_a_frame(frame: pd.DataFrame) -> Any:
    return frame.to_dict("records")


def explode(frame: pd.DataFrame) -> pd.DataFrame:
    raise RuntimeError(f"cannot handle {len(frame)} rows")


class Namespace:
    @staticmethod
    def identity(frame: pd.DataFrame) -> pd.DataFrame:
        return frame
