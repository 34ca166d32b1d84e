"""Training, export and research code: what builds the shipped models, kept out of the runtime packages.

Nothing under ``qa/``, ``index/`` or ``api/`` imports from here; ``make train-…`` targets run these modules.
"""
