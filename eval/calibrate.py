"""Measure the "not found" thresholds from answerable and off-topic questions.

``python -m eval.calibrate [--cache DIR]`` builds (or reuses, via the eval
cache) a knowledge base of the SciFact corpus, runs the SciFact test claims
(answerable) and general questions from other domains (off-topic) through both
retrievers, and prints score percentiles plus the share of each set that a
pair of thresholds keeps. It does the same for Chinese on CMRC 2018 trial
(Wikipedia passages; its questions answerable, everyday questions off-topic),
where the gate is BM25's alone with the English-only bundled embedder. The
defaults in ``RetrievalSettings`` were chosen from this output: nearly every
answerable question must pass; as many off-topic questions as possible should
not.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from eval.beir import load_beir
from eval.runner import build_eval_services
from rag.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"
CMRC = ROOT.parent / "shared" / "datasets" / "cmrc2018-trial"

OFF_TOPIC = [
    "Who won the football world cup in 1954?",
    "What is the capital of Australia?",
    "How do I bake sourdough bread at home?",
    "Which team won the NBA finals last year?",
    "What is the plot of the movie Casablanca?",
    "How tall is the Eiffel Tower?",
    "What is the best way to learn to play the guitar?",
    "When did the Roman Empire fall?",
    "How do I change a flat tyre on a bicycle?",
    "What is the exchange rate between the euro and the yen?",
    "Who wrote the novel Pride and Prejudice?",
    "How many players are on a cricket team?",
    "What is the recipe for Italian tiramisu?",
    "Which planet has the most moons?",
    "How do I reset my email password?",
    "What are the rules of chess castling?",
    "Where is the best place to go skiing in Europe?",
    "How much does a new electric car cost?",
    "What time zone is Tokyo in?",
    "Who painted the Mona Lisa?",
    "世界杯足球赛哪一年在巴西举行？",
    "北京到上海的高铁要多长时间？",
    "怎么做红烧肉？",
    "谁写了《红楼梦》？",
    "明天会下雨吗？",
]
# Everyday questions that none of the CMRC 2018 trial passages answers.
OFF_TOPIC_ZH = [
    "世界杯足球赛哪一年在巴西举行？",
    "北京到上海的高铁要多长时间？",
    "怎么做红烧肉？",
    "明天会下雨吗？",
    "如何重置我的邮箱密码？",
    "自行车的轮胎漏气了怎么补？",
    "欧元兑日元的汇率是多少？",
    "新买的电动汽车多少钱？",
    "东京现在是什么时区？",
    "去欧洲哪里滑雪最好？",
    "怎样在家里烤出好吃的面包？",
    "学吉他最好的方法是什么？",
    "感冒了应该吃什么药？",
    "iPhone手机怎么截屏？",
    "提拉米苏的做法是什么？",
    "国际象棋的王车易位有什么规则？",
    "板球队有多少名队员？",
    "哪颗行星的卫星最多？",
    "个人所得税怎么在网上申报？",
    "猫为什么喜欢晒太阳？",
]


def _best_scores(services, questions: list[str]) -> tuple[np.ndarray, np.ndarray]:
    retriever = services.retriever()
    dense, sparse = [], []
    for question in questions:
        _, best_dense, best_sparse, _ = retriever.candidates(question, candidates=10)
        dense.append(best_dense)
        sparse.append(best_sparse)
    return np.array(dense), np.array(sparse)


def _chinese_table(settings, cache: Path, cosines: list[float]) -> None:  # type: ignore[no-untyped-def]
    dataset = load_beir(CMRC, "test")
    services, _, _ = build_eval_services(dataset, settings, cache)
    try:
        on_dense, on = _best_scores(services, [dataset.queries[q] for q in sorted(dataset.queries)])
        off_dense, off = _best_scores(services, OFF_TOPIC_ZH)
        reads_chinese = services.retriever().dense_covers("中文问题")
    finally:
        services.close()
    if reads_chinese:
        # A multilingual embedder: the cosine gate may pass Chinese questions too.
        print("\n### Best cosine per Chinese question (CMRC 2018 trial corpus)\n")
        print("| set | n | cosine p1 | p5 | p50 | max |")
        print("|---|---|---|---|---|---|")
        for name, dense in (("answerable (CMRC trial)", on_dense), ("off-topic", off_dense)):
            q = np.percentile(dense, [1, 5, 50])
            print(
                f"| {name} | {len(dense)} | {q[0]:.3f} | {q[1]:.3f} | {q[2]:.3f} "
                f"| {dense.max():.3f} |"
            )
        print("\n| min cosine | min bm25 share (Chinese) | answerable kept | off-topic refused |")
        print("|---|---|---|---|")
        for min_dense in cosines:
            for min_sparse in (0.12, 0.2, 0.3):
                kept = np.mean((on_dense >= min_dense) | (on >= min_sparse))
                refused = np.mean((off_dense < min_dense) & (off < min_sparse))
                print(f"| {min_dense} | {min_sparse} | {kept:.1%} | {refused:.1%} |")
    print("\n### Best BM25 share per Chinese question (CMRC 2018 trial corpus)\n")
    print("| set | n | share p1 | p5 | p50 | max |")
    print("|---|---|---|---|---|---|")
    for name, sparse in (("answerable (CMRC trial)", on), ("off-topic", off)):
        p = np.percentile(sparse, [1, 5, 50])
        print(
            f"| {name} | {len(sparse)} | {p[0]:.3f} | {p[1]:.3f} | {p[2]:.3f} "
            f"| {sparse.max():.3f} |"
        )
    print("\n| min bm25 share (Chinese) | answerable kept | off-topic refused |")
    print("|---|---|---|")
    for min_sparse in (0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25):
        print(
            f"| {min_sparse} | {np.mean(on >= min_sparse):.1%} | {np.mean(off < min_sparse):.1%} |"
        )


def main(argv: list[str] | None = None) -> None:
    """Print the calibration tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=None, help="eval cache folder")
    parser.add_argument(
        "--only", choices=("scifact", "cmrc"), default=None, help="calibrate one corpus"
    )
    parser.add_argument(
        "--scifact", type=Path, default=SCIFACT, help="SciFact folder (or a subset, eval.subset)"
    )
    parser.add_argument(
        "--cosines",
        default="0.3,0.32,0.35,0.4",
        help="min cosines to tabulate (multilingual-e5-small: e.g. 0.8,0.82,0.84,0.86,0.88)",
    )
    args = parser.parse_args(argv)
    cosines = [float(c) for c in args.cosines.split(",")]
    settings = load_settings()
    cache = args.cache or settings.data_dir / "eval-cache"
    if args.only != "scifact":
        _chinese_table(settings, cache, cosines)
    if args.only == "cmrc":
        return
    dataset = load_beir(args.scifact, "test")
    services, _, _ = build_eval_services(dataset, settings, cache)
    try:
        on = _best_scores(services, [dataset.queries[q] for q in sorted(dataset.queries)])
        off = _best_scores(services, OFF_TOPIC)
    finally:
        services.close()
    print("\n### Best retrieval scores per question (SciFact corpus)\n")
    print(
        "| set | n | cosine p1 | cosine p5 | cosine p50 | bm25 share p1 | p5 | p50 "
        "| max cosine / share |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (dense, sparse) in (("answerable (SciFact test)", on), ("off-topic", off)):
        d = np.percentile(dense, [1, 5, 50])
        s = np.percentile(sparse, [1, 5, 50])
        print(
            f"| {name} | {len(dense)} | {d[0]:.3f} | {d[1]:.3f} | {d[2]:.3f} | "
            f"{s[0]:.3f} | {s[1]:.3f} | {s[2]:.3f} | {dense.max():.3f} / {sparse.max():.3f} |"
        )
    print("\n| min cosine | min bm25 share | answerable kept | off-topic refused |")
    print("|---|---|---|---|")
    for min_dense in cosines:
        for min_sparse in (0.2, 0.25, 0.3, 0.35, 0.4, 0.5):
            kept = np.mean((on[0] >= min_dense) | (on[1] >= min_sparse))
            refused = np.mean((off[0] < min_dense) & (off[1] < min_sparse))
            print(f"| {min_dense} | {min_sparse} | {kept:.1%} | {refused:.1%} |")


if __name__ == "__main__":
    main()
