"""Search stores: where each collection's chunks are searched (see ``rag.protocols.SearchStore``).

``files`` keeps FAISS and BM25 in memory, saved as files with a SQL journal
(the embedded default); ``postgres`` keeps vectors in pgvector and BM25
postings in SQL tables, so any number of processes share one database.
"""
