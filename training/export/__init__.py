"""Export stage: checkpoint to verified ONNX bundle.

Modules: :mod:`~training.export.run` (what ``authlens export`` calls), :mod:`~training.export.bundle`
(staging, checks and atomic publish), :mod:`~training.export.graph` (ONNX graph, contract, parity),
:mod:`~training.export.metadata` (``bundle.json`` fields), :mod:`~training.export.quantize` (INT8),
:mod:`~training.export.model_card` and :mod:`~training.export.options` (error, options, summary).
The photos come from :mod:`training.data.photos`.
"""
