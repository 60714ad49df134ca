"""Sentence-aware chunking measured in the embedding model's tokens.

Chunks are built from whole sentences so a retrieved passage reads as a
passage; a sentence is cut only when it alone exceeds the chunk size (first at
clause punctuation, then at token boundaries). Consecutive chunks share a few
trailing sentences so a fact stated across a boundary is still found whole.

Markdown tables (as the PDF and office parsers write them) are chunked
apart from the prose around them: a table gets chunks of its own, cut only
between rows, and every chunk after its first starts with a copy of the
table's header, so each chunk still says what its columns are.

Sizes are counted with the embedder's own tokenizer: a chunk longer than the
model's input window would be silently truncated when embedded. Token counts
are computed in batched calls (one for all sentences, one to verify the
chunks whose count is not simply the sum), which keeps a 100-page document
well under a second.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.errors import InvalidInput
from rag.protocols import TokenCounter
from rag.text.sentences import split_clauses, split_sentences
from rag.types import Chunk, CleanText

logger = logging.getLogger(__name__)

MIN_CHUNK_TOKENS = 16
# The line just above a table this short is its caption ("Table 7-2: credit lines,
# in 10k yuan"): it joins the table's header, so every chunk of the table says
# what the table is, and no chunk holds the caption alone.
CAPTION_TOKENS = 40

# A Markdown table: a row line, a delimiter line ("|---|:---:|"), then row lines.
_MARKDOWN_TABLE = re.compile(
    r"^\|[^\n]*\|[ \t]*\n\|(?:[ \t]*:?-+:?[ \t]*\|)+[ \t]*(?:\n\|[^\n]*\|[ \t]*)*$",
    re.MULTILINE,
)


@dataclass(frozen=True)
class TableSpan:
    """A Markdown table in a text: header and delimiter ``[start, body)``, rows ``[body, end)``."""

    start: int
    body: int
    end: int


def markdown_tables(text: str) -> list[TableSpan]:
    """The Markdown tables of ``text`` (each at least a header and a delimiter line), in order."""
    spans = []
    for match in _MARKDOWN_TABLE.finditer(text):
        first_break = text.index("\n", match.start())
        second_break = text.find("\n", first_break + 1, match.end())
        body = match.end() if second_break == -1 else second_break + 1
        spans.append(TableSpan(match.start(), body, match.end()))
    return spans


@dataclass(frozen=True)
class _Piece:
    """A chunk before numbering: ``text`` is ``prefix + clean.text[start:end]``."""

    start: int
    end: int
    tokens: int
    overlap_chars: int
    prefix: str = ""


@dataclass(frozen=True)
class _Unit:
    """A sentence (or piece of an over-long one): ``text[start:end]`` and its tokens."""

    start: int
    end: int
    tokens: int
    # False once a token-less piece that is not whitespace was folded in: the
    # count was taken without it, so a chunk holding this unit is re-counted.
    exact: bool = True


@dataclass(frozen=True)
class _Plan:
    """A chunk as unit indexes: overlap ``[first, new)``, new text ``[new, end)``."""

    first: int
    new: int
    end: int


class SentenceChunker:
    """Chunker that packs whole sentences up to ``chunk_tokens`` tokens.

    Contract (checked by property tests): removing each chunk's first
    ``overlap_chars`` characters and concatenating gives back ``clean.text``
    exactly, and no chunk has more than ``chunk_tokens`` tokens when its text
    is counted again. A chunk keeps the whitespace that follows its last
    sentence and never starts with whitespace (except at the very start of
    the text). A chunk that continues a Markdown table starts with the
    table's header and delimiter lines, which its ``overlap_chars`` count
    (``text[overlap_chars:] == clean.text[char_start:char_end]``).
    """

    def __init__(
        self, token_counter: TokenCounter, chunk_tokens: int = 256, overlap_tokens: int = 38
    ) -> None:
        """Check and keep the sizes.

        Args:
            token_counter: Counts tokens as the embedder will.
            chunk_tokens: Most tokens in a chunk.
            overlap_tokens: Most tokens of whole trailing sentences repeated
                from the previous chunk; 0 for none.

        Raises:
            InvalidInput: a size is out of range.
        """
        if chunk_tokens < MIN_CHUNK_TOKENS:
            raise InvalidInput(f"chunk_tokens must be >= {MIN_CHUNK_TOKENS}, got {chunk_tokens}")
        if not 0 <= overlap_tokens < chunk_tokens:
            raise InvalidInput(
                f"overlap_tokens must be >= 0 and < chunk_tokens ({chunk_tokens}), "
                f"got {overlap_tokens}"
            )
        self.token_counter = token_counter
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens

    def chunk(self, clean: CleanText) -> list[Chunk]:
        """Chunks of ``clean.text`` in order, with pages and overlaps recorded."""
        text = clean.text
        if not text.strip():
            return []
        pieces: list[_Piece] = []
        for start, end, table in self._with_captions(text, _segments(text)):
            if table is None:
                pieces += self._prose_pieces(text, start, end)
            else:
                pieces += self._table_pieces(text, table, end)
        chunks = []
        for ordinal, piece in enumerate(pieces):
            body = text[piece.start : piece.end]
            last_char = piece.start + max(len(body.rstrip()), 1) - 1
            chunks.append(
                Chunk(
                    ordinal=ordinal,
                    text=piece.prefix + body,
                    char_start=piece.start,
                    char_end=piece.end,
                    page_start=clean.page_at(piece.start),
                    page_end=clean.page_at(last_char),
                    token_count=piece.tokens,
                    overlap_chars=piece.overlap_chars,
                )
            )
        logger.debug(
            "chunked chars=%d chunks=%d chunk_tokens=%d overlap_tokens=%d",
            len(text),
            len(chunks),
            self.chunk_tokens,
            self.overlap_tokens,
        )
        return chunks

    def _with_captions(
        self, text: str, segments: list[tuple[int, int, TableSpan | None]]
    ) -> list[tuple[int, int, TableSpan | None]]:
        """Segments with each table's caption line moved from the prose into its header."""
        result: list[tuple[int, int, TableSpan | None]] = []
        for start, end, table in segments:
            previous = result[-1] if result else None
            if table is not None and previous is not None and previous[2] is None:
                prose_start = previous[0]
                stop = len(text[prose_start:start].rstrip()) + prose_start
                line = text.rfind("\n", prose_start, stop) + 1 or prose_start
                row_end = text.find("\n", table.body, table.end)
                first_row = text[table.body : table.end if row_end < 0 else row_end]
                tokens, header_tokens, row_tokens = self.token_counter.count_tokens(
                    [text[line:stop], text[table.start : table.body], first_row]
                )
                # Only a caption that fits a chunk with the header and a row joins them.
                fits = tokens + header_tokens + row_tokens <= self.chunk_tokens
                if 0 < tokens <= CAPTION_TOKENS and fits:
                    result.pop()
                    if text[prose_start:line].strip():
                        result.append((prose_start, line, None))
                    else:
                        line = prose_start
                    start, table = line, TableSpan(line, table.body, table.end)
            result.append((start, end, table))
        return result

    def _prose_pieces(self, text: str, start: int, end: int) -> list[_Piece]:
        """Sentence-packed chunks of ``text[start:end]`` (no tables in it)."""
        units = self._units(text, start, end)
        pieces: list[_Piece] = []
        previous_end = start
        for plan, tokens in self._verified_plans(text, units):
            first, last = units[plan.first].start, units[plan.end - 1].end
            pieces.append(_Piece(first, last, tokens, max(previous_end - first, 0)))
            previous_end = last
        return pieces

    def _table_pieces(self, text: str, table: TableSpan, end: int) -> list[_Piece]:
        """Chunks of one Markdown table, cut between rows, the header repeated.

        ``end`` is where the table's segment ends (the whitespace after the
        table belongs to its last chunk). A row that does not fit a chunk with
        the header goes without it; one that does not fit a chunk even alone
        is cut at clauses and tokens, as an over-long sentence is.
        """
        header = text[table.start : table.body]
        bare = header[header.find("|") if header.startswith("|") else header.find("\n|") + 1 :]
        rows = _line_spans(text, table.body, end)
        if not any(text[a:b].strip() for a, b in rows):  # a header alone: as prose
            return self._prose_pieces(text, table.start, end)
        header_tokens, *row_tokens = self.token_counter.count_tokens(
            [header] + [text[a:b] for a, b in rows]
        )
        repeat = header_tokens < self.chunk_tokens
        # Continuing chunks repeat the caption and header, else the header alone, else nothing.
        prefixes = list(dict.fromkeys([header, bare, ""])) if repeat else [""]
        pieces: list[_Piece] = []
        position = 0
        while position < len(rows):
            first = position == 0
            start = table.start if first else rows[position][0]
            used = header_tokens if first or repeat else 0
            stop = position
            while stop < len(rows) and (
                stop == position or used + row_tokens[stop] <= self.chunk_tokens
            ):
                used += row_tokens[stop]
                stop += 1
            piece = self._fitted(text, start, rows, position, stop, [""] if first else prefixes)
            if piece is None:  # one row too long even without the header
                if first and (header_tokens + row_tokens[0]) > self.chunk_tokens:
                    pieces += self._prose_pieces(text, table.start, table.body)
                pieces += self._prose_pieces(text, rows[position][0], rows[position][1])
                position += 1
                continue
            pieces.append(piece)
            position = next(i for i, (_, b) in enumerate(rows) if b == piece.end) + 1
        return pieces

    def _fitted(
        self,
        text: str,
        start: int,
        rows: list[tuple[int, int]],
        position: int,
        stop: int,
        prefixes: Sequence[str],
    ) -> _Piece | None:
        """The longest chunk of rows ``position:stop`` (or fewer) that fits, counted exactly.

        The first prefix is tried with every row count, the shorter ones
        only for a single row; None when even one row alone is too long.
        """
        for rank, prefix in enumerate(prefixes):
            for last in range(stop if rank == 0 else position + 1, position, -1):
                body = text[start : rows[last - 1][1]]
                (tokens,) = self.token_counter.count_tokens([prefix + body])
                if tokens <= self.chunk_tokens:
                    return _Piece(start, rows[last - 1][1], tokens, len(prefix), prefix)
        return None

    # -- units -----------------------------------------------------------------

    def _units(self, text: str, start: int, end: int) -> list[_Unit]:
        """Sentences of ``text[start:end]`` that each fit a chunk, tiling that span."""
        spans = [(start + a, start + b) for a, b in split_sentences(text[start:end])]
        counts = self.token_counter.count_tokens([text[a:b] for a, b in spans])
        units = [_Unit(a, b, n) for (a, b), n in zip(spans, counts, strict=True)]
        if any(unit.tokens > self.chunk_tokens for unit in units):
            units = self._split_long_units(text, units)
        return _merge_empty(text, units)

    def _split_long_units(self, text: str, units: list[_Unit]) -> list[_Unit]:
        """Cut sentences longer than a chunk at clauses, then at tokens."""
        result: list[_Unit] = []
        long_clauses: list[tuple[int, int]] = []
        clause_owner: list[int] = []
        for index, unit in enumerate(units):
            if unit.tokens > self.chunk_tokens:
                for a, b in split_clauses(text[unit.start : unit.end]):
                    long_clauses.append((unit.start + a, unit.start + b))
                    clause_owner.append(index)
        clause_counts = self.token_counter.count_tokens([text[a:b] for a, b in long_clauses])
        pieces_by_unit: dict[int, list[_Unit]] = {}
        for (a, b), tokens, owner in zip(long_clauses, clause_counts, clause_owner, strict=True):
            clause = _Unit(a, b, tokens)
            pieces = (
                [clause] if tokens <= self.chunk_tokens else self._split_at_tokens(text, clause)
            )
            pieces_by_unit.setdefault(owner, []).extend(pieces)
        for index, unit in enumerate(units):
            result.extend(pieces_by_unit.get(index, [unit]))
        return result

    def _split_at_tokens(self, text: str, unit: _Unit) -> list[_Unit]:
        """Cut ``unit`` at token starts into pieces that each fit a chunk.

        Tokenizers are not additive at arbitrary cut points (a word cut in two
        may cost more tokens), so pieces are counted again and any piece still
        too long is cut with a smaller group size.
        """
        piece_text = text[unit.start : unit.end]
        token_starts = sorted({a for a, _ in self.token_counter.token_spans(piece_text) if a > 0})
        group = self.chunk_tokens
        while True:
            cuts = token_starts[group - 1 :: group]
            bounds = [0, *cuts, len(piece_text)]
            spans = [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
            counts = self.token_counter.count_tokens([piece_text[a:b] for a, b in spans])
            if max(counts) <= self.chunk_tokens or group == 1:
                if max(counts) > self.chunk_tokens:
                    logger.warning(
                        "a piece of %d tokens cannot be cut smaller; chunk_tokens=%d",
                        max(counts),
                        self.chunk_tokens,
                    )
                return [
                    _Unit(unit.start + a, unit.start + b, n)
                    for (a, b), n in zip(spans, counts, strict=True)
                ]
            group = max(1, group * self.chunk_tokens // max(counts) - 1)

    # -- packing ---------------------------------------------------------------

    def _verified_plans(self, text: str, units: list[_Unit]) -> list[tuple[_Plan, int]]:
        """Plans with their re-counted token counts, all within ``chunk_tokens``.

        The greedy plan sums sentence counts; chunk texts whose count may differ
        from that sum are then counted in one batch. A chunk that turns out too
        long (a tokenizer that is not additive across sentences) is shrunk and
        the rest re-planned.
        """
        accepted: list[tuple[_Plan, int]] = []
        position, previous = 0, None
        while position < len(units):
            plans = self._greedy(units, position, previous)
            counts = self._plan_counts(text, units, plans)
            failing = next((i for i, n in enumerate(counts) if n > self.chunk_tokens), None)
            if failing is None:
                accepted.extend(zip(plans, counts, strict=True))
                break
            accepted.extend(zip(plans[:failing], counts[:failing], strict=True))
            fixed, tokens = self._shrink(text, units, plans[failing])
            accepted.append((fixed, tokens))
            position, previous = fixed.end, fixed
        return accepted

    def _plan_counts(self, text: str, units: list[_Unit], plans: list[_Plan]) -> list[int]:
        """Exact token counts of the planned chunks, counting only what must be.

        When the counter splits on whitespace before tokenizing (WordPiece
        models such as MiniLM), a chunk whose sentences all end in whitespace
        has exactly the sum of their counts; only the other chunks (Chinese
        text, cut sentences) are re-counted, in one batch.
        """
        additive = bool(getattr(self.token_counter, "whitespace_additive", False))
        counts = [sum(unit.tokens for unit in units[p.first : p.end]) for p in plans]
        recount = [
            i
            for i, plan in enumerate(plans)
            if not additive
            or not all(units[u].exact for u in range(plan.first, plan.end))
            or not all(text[units[u].end - 1].isspace() for u in range(plan.first, plan.end - 1))
        ]
        if recount:
            exact = self.token_counter.count_tokens(
                [self._text(text, units, plans[i]) for i in recount]
            )
            for i, tokens in zip(recount, exact, strict=True):
                counts[i] = tokens
        return counts

    def _greedy(self, units: list[_Unit], position: int, previous: _Plan | None) -> list[_Plan]:
        """Pack units from ``position`` on, by summed sentence counts."""
        plans: list[_Plan] = []
        while position < len(units):
            first = self._overlap_start(units, position, previous)
            used = sum(unit.tokens for unit in units[first:position])
            # Drop overlap sentences until the first new sentence fits.
            while first < position and used + units[position].tokens > self.chunk_tokens:
                used -= units[first].tokens
                first += 1
            end = position
            while end < len(units) and (
                end == position or used + units[end].tokens <= self.chunk_tokens
            ):
                used += units[end].tokens
                end += 1
            previous = _Plan(first, position, end)
            plans.append(previous)
            position = end
        return plans

    def _overlap_start(self, units: list[_Unit], position: int, previous: _Plan | None) -> int:
        """First unit of the trailing sentences of ``previous`` to repeat.

        Never the previous chunk's first unit: repeating a whole chunk adds
        nothing to what either chunk can be found by.
        """
        if previous is None or self.overlap_tokens == 0:
            return position
        first, used = position, 0
        while first - 1 > previous.first and used + units[first - 1].tokens <= self.overlap_tokens:
            first -= 1
            used += units[first].tokens
        return first

    def _shrink(self, text: str, units: list[_Unit], plan: _Plan) -> tuple[_Plan, int]:
        """Make a too-long chunk fit: drop trailing sentences, then the overlap."""
        candidates = [_Plan(plan.first, plan.new, end) for end in range(plan.end - 1, plan.new, -1)]
        candidates += [
            _Plan(first, plan.new, plan.new + 1) for first in range(plan.first + 1, plan.new + 1)
        ]
        for candidate in candidates:
            (tokens,) = self.token_counter.count_tokens([self._text(text, units, candidate)])
            if tokens <= self.chunk_tokens:
                return candidate, tokens
        # Only reachable when one sentence alone re-counts above the limit
        # (token-less marks merged into it); keep it rather than lose text.
        single = _Plan(plan.new, plan.new, plan.new + 1)
        (tokens,) = self.token_counter.count_tokens([self._text(text, units, single)])
        logger.warning("chunk of %d tokens exceeds chunk_tokens=%d", tokens, self.chunk_tokens)
        return single, tokens

    @staticmethod
    def _text(text: str, units: list[_Unit], plan: _Plan) -> str:
        return text[units[plan.first].start : units[plan.end - 1].end]


def _merge_empty(text: str, units: list[_Unit]) -> list[_Unit]:
    """Fold units without tokens (whitespace, stray marks) into a neighbour.

    A chunk then never starts or ends with a whitespace-only piece.
    """
    merged: list[_Unit] = []
    pending_start: int | None = None
    pending_exact = True
    for unit in units:
        if unit.tokens == 0:
            blank = text[unit.start : unit.end].isspace()
            if merged:
                last = merged[-1]
                merged[-1] = _Unit(last.start, unit.end, last.tokens, last.exact and blank)
            else:
                pending_start = unit.start if pending_start is None else pending_start
                pending_exact = pending_exact and blank
            continue
        if pending_start is not None:
            unit = _Unit(pending_start, unit.end, unit.tokens, pending_exact)
            pending_start = None
        merged.append(unit)
    if pending_start is not None:  # only token-less text: keep it as one unit
        merged.append(_Unit(pending_start, units[-1].end, 0, pending_exact))
    return merged


def _segments(text: str) -> list[tuple[int, int, TableSpan | None]]:
    """``text`` cut into prose and table segments that tile it, in order.

    A table's segment takes the whitespace after it, so every segment but the
    first starts with text; a segment of whitespace alone joins the one before.
    """
    segments: list[tuple[int, int, TableSpan | None]] = []
    position = 0
    for table in markdown_tables(text):
        if text[position : table.start].strip():
            segments.append((position, table.start, None))
        elif segments:
            start, _, previous = segments.pop()
            segments.append((start, table.start, previous))
        else:
            table = TableSpan(position, table.body, table.end)
        end = table.end
        while end < len(text) and text[end].isspace():
            end += 1
        segments.append((table.start, end, table))
        position = end
    if position < len(text):
        if text[position:].strip() or not segments:
            segments.append((position, len(text), None))
        else:
            start, _, previous = segments.pop()
            segments.append((start, len(text), previous))
    return segments


def _line_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Lines of ``text[start:end]`` with their line breaks; the last takes what is left."""
    spans = []
    position = start
    while position < end:
        newline = text.find("\n", position, end)
        stop = end if newline == -1 else newline + 1
        spans.append((position, stop))
        position = stop
    if len(spans) > 1 and not text[spans[-1][0] : spans[-1][1]].strip():
        spans[-2:] = [(spans[-2][0], spans[-1][1])]  # trailing whitespace joins the last row
    return spans
