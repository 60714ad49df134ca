"""Load a BEIR-format retrieval benchmark (corpus, queries, qrels) and cut small slices of it.

A BEIR folder holds ``corpus.jsonl`` (or ``corpus.jsonl.gz``), ``queries.jsonl``
and ``qrels/<split>.tsv``. Ids are kept as strings. Only the queries judged in
the chosen split are kept, because ``queries.jsonl`` mixes all splits.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import InvalidInput, ParseError

log = logging.getLogger(__name__)

QRELS_HEADER = ("query-id", "corpus-id", "score")


@dataclass(frozen=True)
class CorpusDoc:
    """One document of a BEIR corpus."""

    doc_id: str
    title: str
    text: str

    @property
    def full_text(self) -> str:
        """``title + " " + text``, the field BEIR and Anserini "flat" baselines index."""
        return f"{self.title} {self.text}".strip()


@dataclass(frozen=True)
class BeirDataset:
    """A benchmark split: documents, the judged queries and their judgments.

    Attributes:
        corpus: Document id -> document, in file order.
        queries: Query id -> query text, only queries that appear in ``qrels``.
        qrels: Query id -> document id -> relevance grade.
        name: The dataset folder's name (e.g. ``"scifact"``).
        split: The qrels split that was loaded (e.g. ``"test"``).
    """

    corpus: dict[str, CorpusDoc]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    name: str = ""
    split: str = "test"

    def summary(self) -> dict[str, Any]:
        """Counts for a report: name, split, documents, queries, judgments."""
        return {
            "name": self.name,
            "split": self.split,
            "num_docs": len(self.corpus),
            "num_queries": len(self.queries),
            "num_judgments": sum(len(j) for j in self.qrels.values()),
        }


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InvalidInput(f"BEIR {what} not found: expected a file at {path}")
    return path


def _corpus_path(dataset_dir: Path) -> Path:
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        if (dataset_dir / name).is_file():
            return dataset_dir / name
    raise InvalidInput(
        f"BEIR corpus not found: expected {dataset_dir / 'corpus.jsonl'} "
        f"or {dataset_dir / 'corpus.jsonl.gz'}"
    )


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line without its line ending), skipping blank lines."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield number, line
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise ParseError(f"{path.name}: cannot read {path}: {exc}") from exc


def _json_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in _read_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ParseError(f"{path.name} line {number}: invalid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise ParseError(f"{path.name} line {number}: expected a JSON object")
        yield number, record


def _id_field(record: dict[str, Any], path: Path, number: int) -> str:
    value = record.get("_id")
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
        raise ParseError(f"{path.name} line {number}: missing or empty '_id'")
    return str(value)


def _text_field(
    record: dict[str, Any], key: str, path: Path, number: int, *, required: bool
) -> str:
    value = record.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ParseError(f"{path.name} line {number}: '{key}' must be a string, got {value!r}")
    return value


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Read a BEIR qrels TSV (``query-id<TAB>corpus-id<TAB>score``, optional header line).

    Raises:
        ParseError: a line has not three columns or a non-integer score.
    """
    qrels: dict[str, dict[str, int]] = {}
    for index, (number, line) in enumerate(_read_lines(path)):
        fields = line.split("\t")
        if index == 0 and tuple(f.strip() for f in fields) == QRELS_HEADER:
            continue
        if len(fields) != 3:
            raise ParseError(
                f"{path.name} line {number}: expected 3 tab-separated columns "
                f"(query-id, corpus-id, score), got {len(fields)}"
            )
        qid, doc_id, score_text = (f.strip() for f in fields)
        if not qid or not doc_id:
            raise ParseError(f"{path.name} line {number}: empty query-id or corpus-id")
        try:
            score = int(score_text)
        except ValueError:
            raise ParseError(
                f"{path.name} line {number}: score must be an integer, got {score_text!r}"
            ) from None
        qrels.setdefault(qid, {})[doc_id] = score
    return qrels


def read_queries(path: Path, keep: Collection[str] | None = None) -> dict[str, str]:
    """Read ``queries.jsonl`` (``{"_id", "text"}``); with ``keep``, only those ids.

    Every line is validated, also the lines whose query is not kept.
    """
    queries: dict[str, str] = {}
    for number, record in _json_records(path):
        qid = _id_field(record, path, number)
        text = _text_field(record, "text", path, number, required=True)
        if keep is None or qid in keep:
            queries[qid] = text
    return queries


def read_corpus(path: Path) -> dict[str, CorpusDoc]:
    """Read ``corpus.jsonl[.gz]`` (``{"_id", "title", "text"}``) in file order.

    Raises:
        ParseError: bad JSON, a missing ``_id``, a non-string title/text, a repeated id.
    """
    corpus: dict[str, CorpusDoc] = {}
    for number, record in _json_records(path):
        doc_id = _id_field(record, path, number)
        if doc_id in corpus:
            raise ParseError(f"{path.name} line {number}: duplicate _id {doc_id!r}")
        corpus[doc_id] = CorpusDoc(
            doc_id=doc_id,
            title=_text_field(record, "title", path, number, required=False),
            text=_text_field(record, "text", path, number, required=False),
        )
    return corpus


def load_beir(
    dataset_dir: Path,
    split: str = "test",
    *,
    query_ids: Collection[str] | None = None,
    max_docs: int | None = None,
) -> BeirDataset:
    """Load one split of a BEIR dataset folder.

    Args:
        dataset_dir: Folder with ``corpus.jsonl[.gz]``, ``queries.jsonl``, ``qrels/<split>.tsv``.
        split: Which qrels file to use.
        query_ids: Keep only these judged queries (and their judgments).
        max_docs: Keep at most this many documents, first in file order, but never
            drop a document judged for a kept query (so the corpus may exceed it).

    Returns:
        The dataset; its queries are exactly the (kept) queries of the qrels.

    Raises:
        InvalidInput: a file is missing, ``query_ids`` names unjudged queries,
            or ``max_docs`` is below 1.
        ParseError: a malformed line (the message names file and 1-based line),
            or the qrels name queries that ``queries.jsonl`` lacks.
    """
    dataset_dir = Path(dataset_dir)
    if max_docs is not None and max_docs < 1:
        raise InvalidInput(f"max_docs must be at least 1, got {max_docs}")
    qrels_path = _require_file(dataset_dir / "qrels" / f"{split}.tsv", f"qrels for split {split!r}")
    queries_path = _require_file(dataset_dir / "queries.jsonl", "queries")
    corpus_path = _corpus_path(dataset_dir)

    qrels = read_qrels(qrels_path)
    if query_ids is not None:
        wanted = set(query_ids)
        unknown = sorted(wanted - qrels.keys())
        if unknown:
            raise InvalidInput(
                f"query_ids not judged in {qrels_path.name}: {unknown[:10]}"
                f"{' ...' if len(unknown) > 10 else ''}"
            )
        qrels = {qid: judged for qid, judged in qrels.items() if qid in wanted}

    queries = read_queries(queries_path, keep=qrels.keys())
    lacking = [qid for qid in qrels if qid not in queries]
    if lacking:
        raise ParseError(
            f"{qrels_path.name} judges {len(lacking)} queries missing from "
            f"{queries_path.name}, e.g. {lacking[:5]}; the files do not belong together"
        )
    queries = {qid: queries[qid] for qid in qrels}  # qrels order

    corpus = read_corpus(corpus_path)
    judged = {doc_id for judged_docs in qrels.values() for doc_id in judged_docs}
    absent = judged - corpus.keys()
    if absent:
        log.warning(
            "qrels name documents absent from the corpus count=%d file=%s",
            len(absent),
            qrels_path,
        )
    if max_docs is not None and len(corpus) > max_docs:
        room = max(max_docs - len(judged & corpus.keys()), 0)
        extra: set[str] = set()
        for doc_id in corpus:
            if len(extra) >= room:
                break
            if doc_id not in judged:
                extra.add(doc_id)
        corpus = {d: doc for d, doc in corpus.items() if d in judged or d in extra}

    dataset = BeirDataset(
        corpus=corpus, queries=queries, qrels=qrels, name=dataset_dir.name, split=split
    )
    log.info(
        "loaded beir dataset=%s split=%s docs=%d queries=%d",
        dataset.name,
        split,
        len(corpus),
        len(queries),
    )
    return dataset


def slice_beir(ds: BeirDataset, n_queries: int, extra_docs: int, seed: int = 0) -> BeirDataset:
    """A smaller, consistent dataset for fast tests.

    Picks ``n_queries`` queries at random (seeded, so the same inputs give the
    same slice), keeps every document judged for them that the corpus holds,
    and adds ``extra_docs`` other documents at random as distractors.

    Raises:
        InvalidInput: ``n_queries`` is not between 1 and the number of queries, or
            ``extra_docs`` is negative or more than the documents left over.
    """
    if not 1 <= n_queries <= len(ds.queries):
        raise InvalidInput(f"n_queries must be between 1 and {len(ds.queries)}, got {n_queries}")
    rng = random.Random(seed)
    chosen = set(rng.sample(sorted(ds.queries), n_queries))
    judged = {d for qid in chosen for d in ds.qrels.get(qid, {}) if d in ds.corpus}
    others = sorted(d for d in ds.corpus if d not in judged)
    if not 0 <= extra_docs <= len(others):
        raise InvalidInput(f"extra_docs must be between 0 and {len(others)}, got {extra_docs}")
    keep_docs = judged | set(rng.sample(others, extra_docs))
    return BeirDataset(
        corpus={d: doc for d, doc in ds.corpus.items() if d in keep_docs},
        queries={q: text for q, text in ds.queries.items() if q in chosen},
        qrels={q: dict(j) for q, j in ds.qrels.items() if q in chosen},
        name=ds.name,
        split=ds.split,
    )
