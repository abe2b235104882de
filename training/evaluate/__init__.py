"""Evaluation stage: a calibrated checkpoint to ``report.json``, ``report.md``, ``predictions.csv`` and plots.

Modules: :mod:`~training.evaluate.run` (``evaluate_checkpoint``, what ``authlens evaluate`` calls),
:mod:`~training.evaluate.scores` (scoring as serving does, and the metric sections),
:mod:`~training.evaluate.localisation` (where the maps point), :mod:`~training.evaluate.ood`
(the out-of-distribution check), :mod:`~training.evaluate.probe` (the linear-probe baseline),
:mod:`~training.evaluate.plots` and :mod:`~training.evaluate.report` (summary, Markdown, files).
The metrics' titles and formats come from :data:`training.metrics.METRICS`.
"""
