"""Production traces to an eval set and back.

- :mod:`tracehouse.evals.export`: ``fct_eval_candidates`` as eval examples (JSONL), with frozen
  inputs, the versions to replay, tools, outcomes, feedback and labels.
- :mod:`tracehouse.evals.results`: a candidate run's per-example results landed as
  ``eval_result`` annotations, compared with production in ``fct_eval_comparison``.
"""
