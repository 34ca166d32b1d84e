"""Cited question answering over news articles: the stages of an answer (see README, "How an answer is made").

CTranslate2 is imported here, before anything imports torch. Both bundle a GNU OpenMP runtime. Loaded
after torch, CTranslate2's library binds to the copy torch made global, and once torch has run two
threads (the reader does on every question), CTranslate2's own threads wait on each other: decoding
took 29 ms a step instead of 15 (2 cores; README, "Speed"). Loaded first, it keeps its own runtime, and
torch is not slowed either. ``tests/test_generators.py`` checks the order.
"""

try:
    import ctranslate2  # noqa: F401  (loaded for its side effect: first to bind its OpenMP runtime)
except ImportError:  # pragma: no cover - a dependency; without it the CTranslate2 runtime reports itself
    pass
