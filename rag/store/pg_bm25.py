"""BM25 in SQL for the PostgreSQL store: the exhaustive statement and an exact pruned pair.

The exhaustive statement (:data:`SCORE_SQL`) sums every posting of every
query term. At 100k chunks a claim's common terms ("cell", "increase",
"patient") hold most of its 50k-130k postings, and summing them into tens
of thousands of candidate chunks is most of the search's time, although
chunks holding only common terms can never reach the top k.

The pruned pair is MaxScore (Turtle and Flood 1995) in two statements, and
returns exactly the exhaustive statement's top k:

1. :data:`THRESHOLD_SQL` scores the chunks holding one of the *seed* terms
   (the rarest, whose postings are few), completes the best k of them with
   the other terms' contributions (index probes of those k chunks), and
   returns the k-th best complete score ``theta``: the true k-th best score is
   at least that, since those k chunks exist. It also counts the document
   frequency of any term the store does not know yet.
2. A term's contribution is below its upper bound ``idf x repeats x (k1 + 1)``
   (the BM25 saturation limit as tf grows). The commonest terms whose bounds
   sum below ``theta`` (:func:`split_by_bound`) are *non-essential*: a chunk
   holding only them scores below ``theta`` and is never needed.
   :data:`PRUNED_SQL` scans only the essential terms' postings, and completes
   with probes of the non-essential terms only the chunks whose partial score
   plus that bound can still reach the k-th best.

Ties at the k-th score are kept exactly: a pruned chunk scores strictly less
than ``theta``. Both statements return the collection's ``bm25_stats`` version,
so a write between them is noticed and the search runs exhaustively instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import text

# One query term's BM25 contribution from one posting ``p`` (tf and the chunk's
# length), with ``w.weight`` the term's idf x repeats and ``s.avgdl`` the mean length.
_TERM_SCORE = (
    "p.tf * (w.weight * (:k1 + 1.0)) / (p.tf + :k1 * (1.0 - :b + :b * p.length / s.avgdl))"
)

# Used only while there is something to score: N > 0.
_STATS = """
    stats AS MATERIALIZED (
        SELECT n_docs::float8 AS n, total_len::float8 / n_docs AS avgdl,
               xmin::text::bigint AS version
        FROM bm25_stats WHERE collection_id = :cid AND n_docs > 0
    )"""

# A term's df: the store's remembered value while the collection is at the version it
# was counted at (``:version``), else counted from the postings.
_DF = """CASE WHEN q.known >= 0 AND (SELECT version FROM stats) = :version THEN q.known
                    ELSE (SELECT count(*) FROM bm25_postings p
                          WHERE p.collection_id = :cid AND p.term = q.term)::float8
               END"""

# The sum of the contributions of the terms in ``{terms}`` to chunk ``{chunk}``
# (index probes of the postings' primary key), 0 when it holds none of them. The
# postings are ``p`` inside: ``{chunk}`` must name another alias.
_COMPLETION = """coalesce((
            SELECT sum({score})
            FROM {terms} w
            JOIN bm25_postings p
              ON p.collection_id = :cid AND p.term = w.term AND p.chunk_id = {chunk}
            CROSS JOIN stats s), 0)"""

# ``part``: the chunks holding a term of ``{terms}`` with their partial scores;
# ``best``: the k best of them (ties to the smaller id).
_BEST = f"""part AS {{materialized}} (
        SELECT p.chunk_id, sum({_TERM_SCORE}) AS score
        FROM {{terms}} w
        JOIN bm25_postings p ON p.collection_id = :cid AND p.term = w.term
        CROSS JOIN stats s
        GROUP BY p.chunk_id
    ),
    best AS MATERIALIZED (
        SELECT chunk_id, score FROM part ORDER BY score DESC, chunk_id LIMIT :k
    )"""

# Every posting of every query term summed (the reference the pruned pair equals).
# Each term's df is counted once (``dfs``) and handed back with N and the version of
# the collection's ``bm25_stats`` row, so ``sparse_ceiling`` of the same query and
# state needs no second count. The first row always comes while N > 0.
SCORE_SQL = text(
    f"""
    WITH q AS (
        SELECT term, repeats, known, ord
        FROM unnest(CAST(:terms AS text[]), CAST(:repeats AS int[]), CAST(:known AS float8[]))
            WITH ORDINALITY AS q(term, repeats, known, ord)
    ),
    {_STATS},
    dfs AS MATERIALIZED (
        SELECT q.term, q.repeats, q.ord, {_DF} AS df
        FROM q
    ),
    weights AS (
        SELECT d.term, ln(1.0 + (s.n - d.df + 0.5) / (d.df + 0.5)) * d.repeats AS weight
        FROM dfs d CROSS JOIN stats s
        WHERE d.df > 0
    ),
    scored AS (
        SELECT p.chunk_id, sum({_TERM_SCORE}) AS score
        FROM weights w
        JOIN bm25_postings p ON p.collection_id = :cid AND p.term = w.term
        CROSS JOIN stats s
        WHERE (CAST(:allowed AS int8[]) IS NULL OR p.chunk_id = ANY(CAST(:allowed AS int8[])))
        GROUP BY p.chunk_id
    ),
    top AS (
        SELECT chunk_id, score FROM scored WHERE score > 0
        ORDER BY score DESC, chunk_id LIMIT :k
    )
    SELECT s.version, s.n, (SELECT array_agg(d.df ORDER BY d.ord) FROM dfs d) AS dfs,
           t.chunk_id, t.score
    FROM stats s LEFT JOIN top t ON true
    ORDER BY t.score DESC, t.chunk_id
    """
)

# Step 1: (version, N, every term's df in the given order, theta or NULL when the seed
# terms' chunks are fewer than k). ``:seed`` marks the seed terms.
THRESHOLD_SQL = text(
    f"""
    WITH q AS (
        SELECT term, repeats, known, seed, ord
        FROM unnest(CAST(:terms AS text[]), CAST(:repeats AS int[]),
                    CAST(:known AS float8[]), CAST(:seed AS bool[]))
            WITH ORDINALITY AS q(term, repeats, known, seed, ord)
    ),
    {_STATS},
    dfs AS MATERIALIZED (
        SELECT q.term, q.repeats, q.seed, q.ord, {_DF} AS df
        FROM q
    ),
    weights AS MATERIALIZED (
        SELECT d.term, d.seed,
               ln(1.0 + (s.n - d.df + 0.5) / (d.df + 0.5)) * d.repeats AS weight
        FROM dfs d CROSS JOIN stats s
        WHERE d.df > 0
    ),
    seeds AS (SELECT term, weight FROM weights WHERE seed),
    others AS (SELECT term, weight FROM weights WHERE NOT seed),
    {_BEST.format(materialized="", terms="seeds")},
    complete AS (
        SELECT b.score + {_COMPLETION.format(score=_TERM_SCORE, terms="others", chunk="b.chunk_id")}
               AS score
        FROM best b
    )
    SELECT s.version, s.n, (SELECT array_agg(d.df ORDER BY d.ord) FROM dfs d) AS dfs,
           (SELECT CASE WHEN count(*) = :k THEN min(score) END FROM complete) AS theta
    FROM stats s
    """
)

# Step 2: the top k from the essential terms' postings, completed by the
# non-essential ones (weights given: every df is known after step 1). ``:floor`` is
# step 1's theta, ``:bound`` the non-essential terms' summed upper bounds (< floor).
# Rows: (version, chunk_id, score), best first; chunk_id NULL when nothing scored.
PRUNED_SQL = text(
    f"""
    WITH {_STATS.lstrip()},
    essential AS (
        SELECT term, weight
        FROM unnest(CAST(:essential AS text[]), CAST(:essential_w AS float8[])) AS e(term, weight)
    ),
    rest AS (
        SELECT term, weight
        FROM unnest(CAST(:rest AS text[]), CAST(:rest_w AS float8[])) AS r(term, weight)
    ),
    {_BEST.format(materialized="MATERIALIZED", terms="essential")},
    best_complete AS MATERIALIZED (
        SELECT b.chunk_id,
               b.score + {_COMPLETION.format(score=_TERM_SCORE, terms="rest", chunk="b.chunk_id")}
               AS score
        FROM best b
    ),
    theta AS MATERIALIZED (
        SELECT greatest(CAST(:floor AS float8),
                        CASE WHEN count(*) = :k THEN min(score) END) AS t
        FROM best_complete
    ),
    hopeful AS MATERIALIZED (
        SELECT c.chunk_id, c.score
        FROM part c CROSS JOIN theta
        WHERE c.score + :bound >= theta.t
          AND NOT EXISTS (SELECT 1 FROM best b WHERE b.chunk_id = c.chunk_id)
    ),
    hopeful_complete AS MATERIALIZED (
        SELECT h.chunk_id,
               h.score + {_COMPLETION.format(score=_TERM_SCORE, terms="rest", chunk="h.chunk_id")}
               AS score
        FROM hopeful h
    ),
    top AS (
        SELECT chunk_id, score
        FROM (SELECT chunk_id, score FROM best_complete
              UNION ALL SELECT chunk_id, score FROM hopeful_complete) AS c
        WHERE score > 0
        ORDER BY score DESC, chunk_id LIMIT :k
    )
    SELECT s.version, t.chunk_id, t.score
    FROM stats s LEFT JOIN top t ON true
    ORDER BY t.score DESC, t.chunk_id
    """
)

DF_SQL = text(
    """
    SELECT q.term,
           (SELECT count(*) FROM bm25_postings p
            WHERE p.collection_id = :cid AND p.term = q.term) AS df,
           coalesce((SELECT n_docs FROM bm25_stats WHERE collection_id = :cid), 0) AS n_docs,
           (SELECT xmin::text::bigint FROM bm25_stats WHERE collection_id = :cid) AS version
    FROM unnest(CAST(:terms AS text[])) AS q(term)
    """
)

# The version of a collection's keyword state: the xmin of its bm25_stats row. Every
# change to its postings updates (or deletes) that row in the same transaction, so a
# new committed state always carries a new xmin (freezing and VACUUM FULL keep it).
STATS_VERSION_SQL = text("SELECT xmin::text::bigint FROM bm25_stats WHERE collection_id = :cid")

# Seed terms: the rarest, while their postings stay within this share of all the query
# terms' postings (at least one term). Over 100 SciFact claims at 100k chunks, 10% made
# step 1 cost 6.5 ms p50 for a theta close enough to the true k-th score to prune.
SEED_POSTINGS_SHARE = 0.10
# Non-essential terms' bounds sum to below this share of theta. A bound near theta
# lets most chunks of the essential terms through to the probes: over the same claims
# 0.5 left a median 220 chunks to complete (0.8: 930) and the pair at 31 ms p50 against
# 49 ms exhaustive (0.8: 42 ms).
BOUND_SHARE_OF_THETA = 0.5
# Below this many postings over the query's terms the exhaustive statement is cheap
# (a few ms) and the pair's second round trip is not worth it.
PRUNE_MIN_POSTINGS = 20_000


def seed_terms(dfs: Mapping[str, float | None], share: float | None = None) -> list[str]:
    """The rarest terms whose postings stay within ``share`` of the query's (at least one).

    ``share`` defaults to :data:`SEED_POSTINGS_SHARE`.

    A term of unknown df (``None``) is taken as a seed: unknown terms are mostly
    rare ones (common terms recur across questions and are remembered), and
    step 1 counts their df anyway.
    """
    share = SEED_POSTINGS_SHARE if share is None else share
    unknown = [t for t, df in dfs.items() if df is None]
    known = sorted(((df, t) for t, df in dfs.items() if df is not None and df > 0))
    total = sum(df for df, _ in known)
    seeds, postings = list(unknown), 0.0
    for df, term in known:
        if seeds and postings + df > share * total:
            break
        seeds.append(term)
        postings += df
    return seeds


def split_by_bound(
    weights: Mapping[str, float], theta: float, k1: float, share: float | None = None
) -> tuple[list[str], list[str], float]:
    """(essential terms, non-essential terms, their summed bound) for a k-th score ``theta``.

    ``weights`` are idf x repeats per term; a term's contribution never reaches
    ``weight x (k1 + 1)``. The lowest-bound terms go non-essential while their
    bounds sum below ``share x theta``; ``share`` < 1 keeps the bound strictly
    under ``theta``, so a chunk of non-essential terms only can be dropped.
    ``share`` defaults to :data:`BOUND_SHARE_OF_THETA`.
    """
    share = BOUND_SHARE_OF_THETA if share is None else share
    if not 0.0 < share < 1.0:
        raise ValueError(f"share must be strictly between 0 and 1, got {share}")
    rest: list[str] = []
    bound = 0.0
    for term in sorted(weights, key=lambda t: (weights[t], t)):
        upper = weights[term] * (k1 + 1.0)
        if bound + upper >= share * theta:
            break
        rest.append(term)
        bound += upper
    chosen = set(rest)
    return [t for t in weights if t not in chosen], rest, bound
