"""From a question to an answer's inputs and back: query rules, fusion, prompt, answer rules.

* :mod:`rag.query.rules_pre` — rules run on the question before retrieval.
* :mod:`rag.query.fusion` — fusing dense and keyword result lists.
* :mod:`rag.query.prompt` — the generator prompt within its token budget.
* :mod:`rag.query.rules_post` — rules run on the generated answer.
"""
