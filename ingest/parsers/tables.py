"""Tables as Markdown, with the header row found below any preamble.

Office formats (Word, PowerPoint, Excel, CSV, OpenDocument) hand over tables
as grids of cell texts; each becomes one Markdown table, one line per row,
its first line the header. The chunker (``ingest.chunking``) cuts a long
table only between rows and starts every chunk after the first with the
header again, so a retrieved chunk of rows still says what its columns are.

Spreadsheets and bill exports put a title, an address block or a summary above
the real header; :func:`split_preamble` finds the header row so those lines
become plain text instead of column names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

# A header row has at least this share of the widest row's filled cells.
_HEADER_FILL = 0.6
_NUMBER = re.compile(r"^[\s¥$€£%+\-.,()\d]+$")

Row = list[str]


def cell_text(value: str) -> str:
    """A cell's text on one line, with the Markdown cell separator escaped."""
    return " ".join(value.split()).replace("|", "\\|")


def markdown_row(cells: Sequence[str]) -> str:
    """One Markdown table row: ``| a | b |``."""
    return "| " + " | ".join(cell_text(cell) for cell in cells) + " |"


def _rule(width: int) -> str:
    return "|" + "|".join(" --- " for _ in range(width)) + "|"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``rows`` under ``header`` as one Markdown table (header, rule, one line per row).

    Returns:
        The Markdown text; empty when there is neither header nor rows.
    """
    width = max([len(header), *(len(row) for row in rows)], default=0)
    if width == 0:
        return ""
    lines = [markdown_row(_pad(header, width)), _rule(width)]
    lines.extend(markdown_row(_pad(row, width)) for row in rows)
    return "\n".join(lines)


def _pad(row: Sequence[str], width: int) -> list[str]:
    return [*row, *([""] * (width - len(row)))]


def _filled(row: Sequence[str]) -> int:
    return sum(1 for cell in row if cell.strip())


def _is_numeric(cell: str) -> bool:
    return bool(_NUMBER.match(cell)) and any(ch.isdigit() for ch in cell)


def trim_columns(rows: Sequence[Sequence[str]]) -> list[Row]:
    """Rows with the columns that are empty in every row removed."""
    width = max((len(row) for row in rows), default=0)
    keep = [c for c in range(width) if any(c < len(row) and row[c].strip() for row in rows)]
    return [[row[c] if c < len(row) else "" for c in keep] for row in rows]


def split_blocks(rows: Sequence[Sequence[str]]) -> list[list[Row]]:
    """Runs of rows separated by fully empty rows (separate tables on one sheet)."""
    blocks: list[list[Row]] = []
    current: list[Row] = []
    for row in rows:
        if _filled(row) == 0:
            if current:
                blocks.append(current)
            current = []
        else:
            current.append([cell.strip() for cell in row])
    if current:
        blocks.append(current)
    return blocks


def split_preamble(rows: Sequence[Sequence[str]]) -> tuple[list[str], Row, list[Row]]:
    """Find the header row: lines above it are a preamble, rows below are data.

    The header is the first row with at least two filled cells, at least 60%
    of the widest row's filled cells and of the next row's, whose cells are
    not all numbers. A following row with an empty first cell and no numbers
    is a second header line (a grouped header such as "Results" over
    "Accuracy" and "Time"): it is merged into the header, the upper line's
    labels carried right over the empty cells of the group.

    Returns:
        (preamble lines, header cells, data rows). With no such row the header
        is empty and every row is data.
    """
    widest = max((_filled(row) for row in rows), default=0)
    needed = max(2, math.ceil(_HEADER_FILL * widest))
    index = next(
        (
            i
            for i, row in enumerate(rows)
            if _filled(row) >= needed
            and not all(_is_numeric(c) for c in row if c.strip())
            # a title line over a much fuller row is a preamble, not the header
            and (i + 1 == len(rows) or _filled(row) >= _HEADER_FILL * _filled(rows[i + 1]))
        ),
        None,
    )
    if index is None or widest < 2:
        return [], [], [list(row) for row in rows]
    preamble = [" ".join(cell for cell in row if cell.strip()) for row in rows[:index]]
    header = list(rows[index])
    data = [list(row) for row in rows[index + 1 :]]
    if data and _is_sub_header(header, data[0]):
        header = _merge_header(header, data[0])
        data = data[1:]
    return preamble, header, data


def split_postamble(header: Sequence[str], data: Sequence[Row]) -> tuple[list[Row], list[str]]:
    """Trailing one-cell rows under a wide table (totals, export notes) as text lines."""
    if _filled(header) < 3:
        return list(data), []
    end = len(data)
    while end > 0 and _filled(data[end - 1]) <= 1:
        end -= 1
    tail = [" ".join(cell for cell in row if cell.strip()) for row in data[end:]]
    return list(data[:end]), tail


def _is_sub_header(header: Sequence[str], row: Sequence[str]) -> bool:
    filled = [cell for cell in row if cell.strip()]
    return (
        bool(filled)
        and not (row[0].strip() if row else "")
        and not any(_is_numeric(cell) for cell in filled)
    )


def _merge_header(top: Sequence[str], bottom: Sequence[str]) -> Row:
    width = max(len(top), len(bottom))
    top, bottom = _pad(top, width), _pad(bottom, width)
    merged: Row = []
    carried = ""
    for upper, lower in zip(top, bottom, strict=True):
        if upper.strip():
            carried = upper if lower.strip() else ""
        elif not lower.strip():
            carried = ""
        label = upper.strip() or (carried if lower.strip() else "")
        merged.append(" ".join(part for part in (label, lower.strip()) if part))
    return merged


def _header_only(block: Sequence[Sequence[str]]) -> bool:
    _, header, data = split_preamble(trim_columns(block))
    return bool(header) and not data


def render_grid(rows: Sequence[Sequence[str]]) -> str:
    """A sheet or CSV file as text: each block's preamble lines, then its tables.

    Blocks are runs of rows between empty rows; each is trimmed of empty
    columns and gets its own header.
    """
    parts: list[str] = []
    blocks = split_blocks(rows)
    while blocks:
        block = blocks.pop(0)
        # A header (or title and header) set off from its rows by an empty
        # row belongs to the rows below it.
        while blocks and _header_only(block):
            block = block + blocks.pop(0)
        block = trim_columns(block)
        preamble, header, data = split_preamble(block)
        data, postamble = split_postamble(header, data)
        parts.extend(line for line in preamble if line)
        if header and not data:  # column names over nothing: a line of text
            parts.append(" ".join(cell for cell in header if cell))
        elif header or len(block[0]) > 1:
            parts.append(markdown_table(header or [""] * len(block[0]), data))
        else:  # a single column of text is prose, not a table
            parts.extend(row[0] for row in data if row and row[0])
        parts.extend(line for line in postamble if line)
    return "\n\n".join(part for part in parts if part)
