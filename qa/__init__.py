"""Cited question answering over news articles: the stages of an answer (see README, "How an answer is made").

Importing it imports ``index`` first, which loads CTranslate2 before anything imports torch (see
``index/__init__.py``).
"""

import index  # noqa: F401  (binds CTranslate2's OpenMP runtime before torch loads)
