"""Passages, embeddings and the on-disk index: the lowest layer, which everything else imports.

CTranslate2 is imported here, before anything imports torch. Both bundle a GNU OpenMP runtime. Loaded
after torch, CTranslate2's library binds to the copy torch made global, and once torch has run two
threads (the reader does on every question), CTranslate2's own threads wait on each other: decoding
took 29 ms a step instead of 15 (2 cores; README, "Speed"). Loaded first, it keeps its own runtime, and
torch is not slowed either. This lives in the lowest layer, so that importing any package of the
project binds it first; ``tests/test_generators.py`` checks the order for every entry point.

CTranslate2 is also told not to use Intel MKL (``CT2_USE_MKL=0``; set it to 1 to get MKL back). On Intel
CPUs it picks MKL, whose packed matrices hold a second copy of the weights: the 513 MiB float32 generator
took 827 MiB resident (1,224 MiB at its peak while loading) instead of 548, and on a 2-core Xeon
decoded 17.6 tokens/s instead of 40.8 (``make bench-decoders``), with the same greedy answers
(README, "Speed").
"""

import os

os.environ.setdefault("CT2_USE_MKL", "0")  # read when CTranslate2 first runs on the CPU; see above

try:
    import ctranslate2  # noqa: F401  (loaded for its side effect: first to bind its OpenMP runtime)
except ImportError:  # pragma: no cover - a dependency; without it the CTranslate2 runtime reports itself
    pass
