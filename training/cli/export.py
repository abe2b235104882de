"""``authlens export``: checkpoint to verified ONNX bundle.

Usage: ``authlens export --checkpoint runs/synthetic/best.pt --out bundles/synthetic --int8``

Run it under the shared CPU lock when it measures INT8 speed:
``flock /tmp/authlens-heavy.lock authlens export ... --int8``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.table import Table

    from model.bundle import Bundle
    from training.export.run import ExportSummary


def export(
    checkpoint: Annotated[
        Path, typer.Option("--checkpoint", "-c", help="Checkpoint written by training (best.pt).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle directory to write (created atomically).")],
    int8: Annotated[
        bool | None,
        typer.Option(
            "--int8/--no-int8", help="Also write a statically quantized model.int8.onnx (default: config)."
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            help="Manifest or genuine/+counterfeit/ folder for parity and INT8 (default: the run's split manifest).",
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Bundle name (default: the run name).")] = None,
    version: Annotated[str | None, typer.Option(help="Bundle version (default: epoch<N>).")] = None,
    allow_auc_drop: Annotated[
        bool,
        typer.Option(
            "--allow-auc-drop", help="Keep an INT8 model whose ROC-AUC dropped more than allowed (recorded)."
        ),
    ] = False,
    max_auc_drop: Annotated[
        float | None,
        typer.Option(
            min=0.0, help="Largest INT8 ROC-AUC drop accepted (default: config export.max_auc_drop, 0.01)."
        ),
    ] = None,
    parity_tolerance: Annotated[
        float | None,
        typer.Option(min=0.0, help="Largest |ORT - torch| of the probabilities (default: config, 1e-4)."),
    ] = None,
    opset: Annotated[
        int | None, typer.Option(min=17, help="ONNX opset (the exporter's minimum is 18).")
    ] = None,
    eval_images: Annotated[
        int, typer.Option(min=1, help="Held-out photos used at most for parity and INT8 AUC.")
    ] = 512,
    calibration_images: Annotated[
        int, typer.Option(min=1, help="Training photos used at most for INT8 calibration.")
    ] = 128,
    latency_batch: Annotated[int, typer.Option(min=1, help="Batch size of the fp32/INT8 timing.")] = 8,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing bundle at --out.")] = False,
) -> None:
    """Export a checkpoint to a verified ONNX bundle."""
    from model.bundle import BundleError
    from model.cliutil import user_errors
    from training.checkpoint import CheckpointError
    from training.data.manifest import ManifestError
    from training.export.run import ExportError, ExportSummary, export_checkpoint

    summary = ExportSummary()
    with user_errors(CheckpointError, ExportError, BundleError, ManifestError, ValueError):
        bundle = export_checkpoint(
            checkpoint,
            out,
            name=name,
            version=version,
            images=images,
            max_evaluation=eval_images,
            max_calibration=calibration_images,
            summary=summary,
            int8=int8,
            allow_auc_drop=allow_auc_drop,
            max_auc_drop=max_auc_drop,
            parity_tolerance=parity_tolerance,
            opset=opset,
            latency_batch=latency_batch,
            overwrite=force,
        )
    _print_summary(bundle, summary)


def _print_summary(bundle: Bundle, summary: ExportSummary) -> None:
    """Print the export's warnings to stderr, then the summary table to stdout."""
    from rich.console import Console

    console = Console(stderr=True)
    for warning in summary.warnings:
        console.print(f"[bold red]WARNING:[/] {warning}", highlight=False, soft_wrap=True)
    Console().print(_summary_table(bundle, summary))


def _summary_table(bundle: Bundle, summary: ExportSummary) -> Table:
    """The table printed after an export: where the bundle is, its parity check and its INT8 figures."""
    from rich.table import Table

    m = bundle.manifest
    table = Table(title=f"bundle {m.name} {m.version}", show_header=False)
    p = summary.parity
    table.add_row("path", str(bundle.path))
    table.add_row("sha256", bundle.sha256)
    table.add_row(
        "parity",
        f"max |ORT - torch| {p['max_abs_diff']:.2e} (tolerance {p['tolerance']:g}) on {p['images']} photos, "
        f"batches {', '.join(map(str, p['batch_sizes']))}",
    )
    table.add_row("photos", p["image_source"])
    if summary.int8:
        _add_int8_rows(table, summary.int8)
    return table


def _add_int8_rows(table: Table, q: dict[str, Any]) -> None:
    """Add the INT8 model's rows: ROC-AUC and ECE against fp32, speed, size and drift."""
    table.add_row(
        "INT8 ROC-AUC",
        f"{q['roc_auc_fp32']:.4f} -> {q['roc_auc_int8']:.4f} (drop {q['roc_auc_fp32'] - q['roc_auc_int8']:+.4f}, "
        f"allowed {q['max_auc_drop']:g}) on {q['evaluation_images']} photos",
    )
    table.add_row("INT8 ECE", f"{q['ece_fp32']:.4f} -> {q['ece_int8']:.4f}")
    table.add_row(
        "INT8 speed",
        f"x{q['speedup']:.2f}: {q['latency_ms_fp32']:.1f} ms -> {q['latency_ms_int8']:.1f} ms per batch of "
        f"{q['batch_size']} (median of {q['repeats']})",
    )
    table.add_row("INT8 size", f"{q['size_bytes_fp32'] / 1e6:.1f} MB -> {q['size_bytes_int8'] / 1e6:.1f} MB")
    table.add_row(
        "INT8 drift",
        f"|p_genuine diff| mean {q['mean_abs_diff_p_genuine']:.4f}, max {q['max_abs_diff_p_genuine']:.4f}; "
        f"verdict flips {q['verdict_flips']}, OOD flips {q['ood_flips']} of {q['evaluation_images']}",
    )
