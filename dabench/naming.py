"""How a method is named in tables, figures and captions: the one display-name function.

A name is the method's ``label`` followed, in parentheses, by what tells its rows apart — its
``variant`` (parameters) and its timestep count K: "D-TRAK (square, K=100)", "Datamodel (M=8)",
"TRAK (K=10)", "Raw pixel". A caller that shows one row per method passes only the label.
"""

from __future__ import annotations

import pandas as pd


def display_name(label: str, variant: str | None = None, n_timesteps: int | None = None) -> str:
    """``label (variant, K=n_timesteps)``, leaving out the parts that are empty or None."""
    parts = [p for p in (variant or None, None if n_timesteps is None else f"K={int(n_timesteps)}")
             if p]
    return f"{label} ({', '.join(parts)})" if parts else label


def row_names(df: pd.DataFrame) -> pd.Series:
    """:func:`display_name` of each row of a table with ``method`` (the label), ``variant`` and
    ``n_timesteps`` columns (missing values: NaN, NA or "")."""
    def given(value):
        return None if pd.isna(value) or value == "" else value

    return pd.Series([display_name(m, None if given(v) is None else str(v), given(k))
                      for m, v, k in zip(df["method"], df["variant"], df["n_timesteps"])],
                     index=df.index)
