"""Cross-lingual retrieval sets: English questions over Chinese passages and the reverse.

The questions are in ``eval/crosslingual/`` and were written by hand:
``en_over_zh.jsonl`` translates 25 CMRC 2018 trial questions into English (each
answer is in its CMRC gold passage, checked by reading it);
``zh_over_en.jsonl`` translates 22 SciFact test claims into Chinese (CMRC has
no English text). Each line names its ``source_query``; the gold documents
are that query's judgments in the source dataset.

``python -m eval.crosslingual OUT_DIR`` writes two BEIR folders,
``OUT_DIR/en-over-zh`` (the whole CMRC trial corpus) and ``OUT_DIR/zh-over-en``
(the SciFact subset of :mod:`eval.subset`: every judged abstract plus sampled
ones, 1,000 in all). Their corpora are those of the monolingual runs, so
``rag eval`` reuses those cached knowledge bases and only embeds the
questions. Each question has one judged document here (or a few), so
Recall@5 is hit@5.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from eval.subset import write_subset

ROOT = Path(__file__).resolve().parents[1]
SETS = ROOT / "eval" / "crosslingual"
DATASETS = ROOT.parent / "shared" / "datasets"


def _qrels(path: Path) -> dict[str, list[str]]:
    judged: dict[str, list[str]] = {}
    for line in path.read_text().splitlines()[1:]:
        if line.strip():
            query, doc, *_ = line.split("\t")
            judged.setdefault(query, []).append(doc)
    return judged


def write_set(questions: Path, source: Path, target: Path, *, subset_docs: int | None) -> int:
    """One BEIR folder of the hand-made ``questions`` over ``source``'s corpus; returns the count.

    Raises:
        ValueError: A question's hand-checked document is not among its source judgments.
    """
    target.mkdir(parents=True, exist_ok=True)
    if subset_docs is None:
        corpus = next(p for p in source.glob("corpus.jsonl*"))
        shutil.copyfile(corpus, target / corpus.name)
    else:
        write_subset(source, target, docs=subset_docs, split="test", seed=0)
    judged = _qrels(source / "qrels" / "test.tsv")
    rows = [json.loads(line) for line in questions.read_text(encoding="utf-8").splitlines() if line]
    (target / "qrels").mkdir(exist_ok=True)
    lines = ["query-id\tcorpus-id\tscore"]
    with open(target / "queries.jsonl", "w", encoding="utf-8") as handle:
        for row in rows:
            gold = judged.get(row["source_query"], [])
            if row["document"] not in gold:
                raise ValueError(f"{row['_id']}: {row['document']} is not judged for its source")
            handle.write(json.dumps({"_id": row["_id"], "text": row["text"]}, ensure_ascii=False))
            handle.write("\n")
            lines += [f"{row['_id']}\t{doc}\t1" for doc in gold]
    (target / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return len(rows)


def main(argv: list[str] | None = None) -> None:
    """Write both folders and print their sizes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--scifact-docs", type=int, default=1000)
    args = parser.parse_args(argv)
    cmrc, scifact = DATASETS / "cmrc2018-trial", DATASETS / "scifact"
    sizes = {
        "en-over-zh": write_set(
            SETS / "en_over_zh.jsonl", cmrc, args.out / "en-over-zh", subset_docs=None
        ),
        "zh-over-en": write_set(
            SETS / "zh_over_en.jsonl",
            scifact,
            args.out / "zh-over-en",
            subset_docs=args.scifact_docs,
        ),
    }
    print(json.dumps(sizes))


if __name__ == "__main__":
    main()
