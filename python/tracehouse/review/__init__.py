"""The review workflow: label a trace with the failure taxonomy, promote it to the eval set.

- :mod:`tracehouse.review.taxonomy`: the failure taxonomy codes, from the dbt seed.
- :mod:`tracehouse.review.lookup`: does a trace exist (published marts or the lake)?
- :mod:`tracehouse.review.labels`: labels and promotions as annotations, through the lake writer.
- :mod:`tracehouse.review.trace_section`: how labels and promotions read in ``tracehouse trace``.
"""
