"""Deciding whether the articles answer: the stage between reading and citing.

The reader (``qa.reader``) finds the best span in each passage it reads; this stage asks of each span
whether it *is* an answer to the question, and abstains when none is likely enough:

- ``verifier``: a cross-encoder that reads the question and the span's sentence with the span marked
  (``«…»``) and scores whether the sentence answers the question with that span (Read+Verify, Hu et
  al. 2019; Retro-Reader's "intensive" verifier, Zhang et al. 2021);
- ``features``: pure functions over the question, the span and its passage (answer type, names and years
  the passage lacks, the reader's margin, retrieval rank);
- ``decision``: a small logistic model over the verifier's score and those features, fitted on dev data
  only, whose output is the probability that answering with the span is right. One operating point
  (``QA_ANSWER_THRESHOLD``) decides for every domain.

Not to be confused with ``qa.verify``, which checks a *generated sentence* against its quotes after the
decision to answer has been made.
"""
