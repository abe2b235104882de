"""What every export stage shares: its error, its options and the summary it fills."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_OPSET = 18
DEFAULT_PARITY_TOLERANCE = 1e-4
DEFAULT_MAX_AUC_DROP = 0.01


class ExportError(RuntimeError):
    """An export that must not produce a bundle; the message says what failed and what to do."""


@dataclass(frozen=True)
class ExportOptions:
    """How an export is checked.

    Attributes:
        opset: ONNX opset (at least 18 with the dynamo exporter; lower values are raised to 18).
        parity_tolerance: Largest allowed |ORT - torch| of the probabilities.
        parity_images: Photos compared for parity (the first of the evaluation set).
        int8: Also write ``model.int8.onnx``.
        max_auc_drop: Largest ROC-AUC drop INT8 may cause.
        allow_auc_drop: Keep an INT8 model whose AUC dropped more (recorded in the bundle and card).
        latency_batch: Photos per batch of the fp32/INT8 timing.
        latency_repeats: Timed runs of each graph.
        overwrite: Replace an existing bundle at the output path.
    """

    opset: int = DEFAULT_OPSET
    parity_tolerance: float = DEFAULT_PARITY_TOLERANCE
    parity_images: int = 32
    int8: bool = False
    max_auc_drop: float = DEFAULT_MAX_AUC_DROP
    allow_auc_drop: bool = False
    latency_batch: int = 8
    latency_repeats: int = 10
    overwrite: bool = True
    quant: Any = None  # training.export.quantize.QuantSettings; None = its defaults

    def __post_init__(self) -> None:
        if self.opset < 17:
            raise ValueError(f"opset must be 17 or newer, got {self.opset}.")
        if not self.parity_tolerance > 0:
            raise ValueError(f"parity_tolerance must be positive, got {self.parity_tolerance}.")
        if self.max_auc_drop < 0:
            raise ValueError(f"max_auc_drop must be at least 0, got {self.max_auc_drop}.")
        for name in ("parity_images", "latency_batch", "latency_repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")


@dataclass
class ExportSummary:
    """What an export measured, for the CLI and the log."""

    parity: dict[str, Any] = field(default_factory=dict)
    int8: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
