"""The tables of a run as HTML pages for Snakemake's report (`make report`): each CSV under
``tables/`` rendered with its caption, the first comment lines of the LaTeX file beside it."""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from pathlib import Path

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; font-size: 13px;
       margin: 1.5em; color: #222; }
p.caption { max-width: 60em; color: #444; }
table { border-collapse: collapse; }
thead th { border-top: 2px solid #222; border-bottom: 1px solid #222; padding: 3px 8px;
           text-align: left; }
tbody td { padding: 2px 8px; font-variant-numeric: tabular-nums; }
tbody tr:last-child td { border-bottom: 2px solid #222; }
tbody tr:nth-child(even) { background: #f5f5f5; }
td.num { text-align: right; }
"""


def caption_of(csv_path) -> str:
    """The caption of a table: the leading ``%`` comment lines of its .tex, else its file name."""
    tex = Path(csv_path).with_suffix(".tex")
    if tex.exists():
        lines = []
        for line in tex.read_text().splitlines():
            if not line.startswith("%"):
                break
            lines.append(line.lstrip("% ").strip())
        if lines:
            return " ".join(lines)
    return Path(csv_path).stem.replace("_", " ")


def table_page(csv_path, max_rows: int = 500) -> str:
    """One self-contained HTML page: caption, then the table (numbers to 2 decimals; the first
    ``max_rows`` rows of a longer table, which the CSV holds whole)."""
    import numpy as np
    import pandas as pd

    df = pd.read_csv(csv_path)
    note = (f" Showing the first {max_rows} of {len(df)} rows; the CSV has them all."
            if len(df) > max_rows else "")
    df = df.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for value, num in zip(row, numeric):
            if num and isinstance(value, (float, np.floating)):
                text = "" if np.isnan(value) else f"{value:.2f}"
            else:
                text = "" if value is None or (isinstance(value, float) and np.isnan(value)) \
                    else str(value)
            cells.append(f'<td class="num">{html.escape(text)}</td>' if num
                         else f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    name = Path(csv_path).name
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(name)}"
            f"</title><style>{STYLE}</style></head><body><h3>{html.escape(name)}</h3>"
            f"<p class='caption'>{html.escape(caption_of(csv_path) + note)}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f"</body></html>\n")


def write_table_pages(csv_paths, out_dir) -> list[Path]:
    """Workflow stage: ``<out_dir>/<table>.html`` for every CSV, written into a scratch folder
    that replaces ``out_dir`` in one rename (an interrupted job leaves no half folder)."""
    from dabench.io import default_mode

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for path in csv_paths:
            (tmp / f"{Path(path).stem}.html").write_text(table_page(path))
        os.chmod(tmp, default_mode(directory=True))     # mkdtemp makes it private
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(out_dir.glob("*.html"))
