"""BEIR loading: format, line-numbered errors, slicing; and the real SciFact files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from eval.beir import BeirDataset, CorpusDoc, load_beir, slice_beir
from rag.errors import InvalidInput, ParseError

CORPUS = [
    {"_id": "d1", "title": "Aspirin", "text": "Aspirin lowers fever.", "metadata": {}},
    {"_id": "d2", "title": "", "text": "Vitamin C and colds."},
    {"_id": 3, "title": "Numeric id", "text": "Kept as the string '3'."},
    {"_id": "d4", "title": "Distractor", "text": "Unrelated."},
    {"_id": "d5", "title": "Distractor", "text": "Also unrelated."},
]
QUERIES = [
    {"_id": "1", "text": "Does aspirin lower fever?", "metadata": {}},
    {"_id": "2", "text": "Does vitamin C prevent colds?"},
    {"_id": "7", "text": "A train query, not in the test qrels."},
]
QRELS = "query-id\tcorpus-id\tscore\n1\td1\t1\n2\td2\t1\n2\t3\t0\n"


def write_beir(
    root: Path,
    *,
    corpus: list | None = None,
    queries: list | None = None,
    qrels: str = QRELS,
    gz: bool = False,
    raw_corpus: str | None = None,
    raw_queries: str | None = None,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    corpus_text = raw_corpus
    if corpus_text is None:
        corpus_text = "".join(json.dumps(r) + "\n" for r in (corpus or CORPUS))
    if gz:
        with gzip.open(root / "corpus.jsonl.gz", "wt", encoding="utf-8") as fh:
            fh.write(corpus_text)
    else:
        (root / "corpus.jsonl").write_text(corpus_text, encoding="utf-8")
    queries_text = raw_queries
    if queries_text is None:
        queries_text = "".join(json.dumps(r) + "\n" for r in (queries or QUERIES))
    (root / "queries.jsonl").write_text(queries_text, encoding="utf-8")
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8")
    return root


@pytest.mark.unit
@pytest.mark.parametrize("gz", [False, True])
def test_load_small_dataset(tmp_path: Path, gz: bool) -> None:
    ds = load_beir(write_beir(tmp_path / "toy", gz=gz))
    assert ds.name == "toy" and ds.split == "test"
    assert list(ds.corpus) == ["d1", "d2", "3", "d4", "d5"]
    assert ds.corpus["3"] == CorpusDoc("3", "Numeric id", "Kept as the string '3'.")
    assert ds.corpus["d2"].full_text == "Vitamin C and colds."
    assert ds.queries == {"1": "Does aspirin lower fever?", "2": "Does vitamin C prevent colds?"}
    assert ds.qrels == {"1": {"d1": 1}, "2": {"d2": 1, "3": 0}}
    assert ds.summary() == {
        "name": "toy",
        "split": "test",
        "num_docs": 5,
        "num_queries": 2,
        "num_judgments": 3,
    }


@pytest.mark.unit
def test_qrels_without_header_crlf_and_blank_lines(tmp_path: Path) -> None:
    ds = load_beir(write_beir(tmp_path, qrels="1\td1\t1\r\n\r\n2\td2\t2\r\n"))
    assert ds.qrels == {"1": {"d1": 1}, "2": {"d2": 2}}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("qrels", "line", "fragment"),
    [
        ("query-id\tcorpus-id\tscore\n1\td1\t1\n2\td2\n", 3, "3 tab-separated columns"),
        ("query-id\tcorpus-id\tscore\n1\td1\t1.5\n", 2, "score must be an integer"),
        ("1\td1\tyes\n", 1, "score must be an integer"),
        ("1\td1\t1\textra\n", 1, "got 4"),
    ],
)
def test_bad_qrels_line_numbered(tmp_path: Path, qrels: str, line: int, fragment: str) -> None:
    with pytest.raises(ParseError, match=rf"test\.tsv line {line}: .*{fragment}"):
        load_beir(write_beir(tmp_path, qrels=qrels))


@pytest.mark.unit
def test_bad_corpus_json_line_numbered(tmp_path: Path) -> None:
    raw = json.dumps(CORPUS[0]) + "\n" + '{"_id": "d2", "text": \n'
    with pytest.raises(ParseError, match=r"corpus\.jsonl line 2: invalid JSON"):
        load_beir(write_beir(tmp_path, raw_corpus=raw))


@pytest.mark.unit
def test_bad_gz_corpus_line_numbered(tmp_path: Path) -> None:
    raw = json.dumps(CORPUS[0]) + "\n\n" + json.dumps({"title": "no id", "text": "x"}) + "\n"
    with pytest.raises(ParseError, match=r"corpus\.jsonl\.gz line 3: missing or empty '_id'"):
        load_beir(write_beir(tmp_path, raw_corpus=raw, gz=True))


@pytest.mark.unit
def test_duplicate_and_non_string_corpus_fields(tmp_path: Path) -> None:
    raw = json.dumps(CORPUS[0]) + "\n" + json.dumps(CORPUS[0]) + "\n"
    with pytest.raises(ParseError, match=r"line 2: duplicate _id 'd1'"):
        load_beir(write_beir(tmp_path / "a", raw_corpus=raw))
    raw = json.dumps({"_id": "d1", "text": ["not", "a", "string"]}) + "\n"
    with pytest.raises(ParseError, match=r"line 1: 'text' must be a string"):
        load_beir(write_beir(tmp_path / "b", raw_corpus=raw))


@pytest.mark.unit
def test_bad_queries_line_numbered(tmp_path: Path) -> None:
    raw = json.dumps(QUERIES[0]) + "\n" + json.dumps({"text": "no id"}) + "\n"
    with pytest.raises(ParseError, match=r"queries\.jsonl line 2: missing or empty '_id'"):
        load_beir(write_beir(tmp_path / "a", raw_queries=raw))
    raw = json.dumps(QUERIES[0]) + "\n[1, 2]\n"
    with pytest.raises(ParseError, match=r"queries\.jsonl line 2: expected a JSON object"):
        load_beir(write_beir(tmp_path / "b", raw_queries=raw))


@pytest.mark.unit
def test_qrels_naming_unknown_queries(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"missing from queries\.jsonl.*'42'"):
        load_beir(write_beir(tmp_path, qrels=QRELS + "42\td1\t1\n"))


@pytest.mark.unit
def test_missing_files_name_the_expected_path(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "toy")
    with pytest.raises(InvalidInput, match=r"qrels for split 'dev'.*qrels/dev\.tsv"):
        load_beir(root, split="dev")
    (root / "queries.jsonl").unlink()
    with pytest.raises(InvalidInput, match=r"queries\.jsonl"):
        load_beir(root)
    write_beir(root)
    (root / "corpus.jsonl").unlink()
    with pytest.raises(InvalidInput, match=r"corpus\.jsonl or .*corpus\.jsonl\.gz"):
        load_beir(root)


@pytest.mark.unit
def test_query_ids_and_max_docs(tmp_path: Path) -> None:
    root = write_beir(tmp_path)
    ds = load_beir(root, query_ids=["2"], max_docs=3)
    assert ds.queries == {"2": "Does vitamin C prevent colds?"}
    assert ds.qrels == {"2": {"d2": 1, "3": 0}}
    # Judged d2 and 3 always stay; one more slot goes to the first other doc.
    assert list(ds.corpus) == ["d1", "d2", "3"]
    ds = load_beir(root, max_docs=1)  # judged docs win over the cap
    assert set(ds.corpus) == {"d1", "d2", "3"}
    with pytest.raises(InvalidInput, match=r"not judged.*'7'"):
        load_beir(root, query_ids=["7"])
    with pytest.raises(InvalidInput, match="max_docs must be at least 1, got 0"):
        load_beir(root, max_docs=0)


def _toy_dataset() -> BeirDataset:
    corpus = {str(i): CorpusDoc(str(i), f"t{i}", f"text {i}") for i in range(100)}
    queries = {f"q{i}": f"query {i}" for i in range(20)}
    qrels = {f"q{i}": {str(i): 1, str(i + 50): 2} for i in range(20)}
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels, name="toy")


@pytest.mark.unit
def test_slice_is_consistent_and_deterministic() -> None:
    ds = _toy_dataset()
    a = slice_beir(ds, n_queries=5, extra_docs=10, seed=3)
    b = slice_beir(ds, n_queries=5, extra_docs=10, seed=3)
    assert a == b
    assert len(a.queries) == 5 and a.queries.keys() == a.qrels.keys()
    judged = {d for j in a.qrels.values() for d in j}
    assert judged <= a.corpus.keys()
    assert len(a.corpus) == len(judged) + 10
    assert list(a.corpus) == [d for d in ds.corpus if d in a.corpus]  # file order kept
    c = slice_beir(ds, n_queries=5, extra_docs=10, seed=4)
    assert (c.queries, c.corpus.keys()) != (a.queries, a.corpus.keys())


@pytest.mark.unit
def test_slice_rejects_bad_sizes() -> None:
    ds = _toy_dataset()
    with pytest.raises(InvalidInput, match="n_queries must be between 1 and 20, got 0"):
        slice_beir(ds, n_queries=0, extra_docs=0)
    with pytest.raises(InvalidInput, match="extra_docs must be between 0 and 98, got 99"):
        slice_beir(ds, n_queries=1, extra_docs=99)


@pytest.mark.integration
def test_real_scifact_test_split(scifact_dir: Path) -> None:
    ds = load_beir(scifact_dir)
    # Counts from the dataset README: 5,183 docs; 300 test queries; 339 judgments on 283 docs.
    assert len(ds.corpus) == 5183
    assert len(ds.queries) == 300
    assert sum(len(j) for j in ds.qrels.values()) == 339
    judged = {d for j in ds.qrels.values() for d in j}
    assert len(judged) == 283 and judged <= ds.corpus.keys()
    assert all(isinstance(k, str) for k in ds.corpus)
    assert ds.corpus["4983"].title  # the README's example id
    small = slice_beir(ds, n_queries=10, extra_docs=50, seed=0)
    assert len(small.queries) == 10 and len(small.corpus) >= 60
