"""Evidence behind the export choices: exporter (dynamo vs TorchScript) and INT8 settings.

Usage: ``flock /tmp/authlens-heavy.lock python benchmarks/bench_export.py --checkpoint runs/sneakers/best.pt``

Prints JSON lines; the figures in ``docs/export.md`` come from it. All timings are side by side in
one process (runs alternate between the graphs compared), medians of ``--repeats`` runs.

* ``exporter``: export time, raw node count, ORT latency and parity of both torch exporters.
* ``int8``: for each quantization setting, ROC-AUC/ECE on the run's held-out photos, the change
  of p_genuine, verdict and OOD flips against fp32, and the file size.
* ``latency``: fp32 and every INT8 setting timed together at batch 1 and ``--batch``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from training.checkpoint import Checkpoint
    from training.data.photos import ExportImages


def _line(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def exporters(ckpt: Checkpoint, images: ExportImages, out: Path, repeats: int) -> None:
    """Both torch exporters on the same network: time, graph size, ORT speed and parity."""
    import onnx
    import torch

    from model.bundle import INPUT_NAME, output_names
    from model.session import make_session
    from training.export.graph import check_parity, export_onnx, serving_graph
    from training.export.quantize import time_side_by_side

    graph = serving_graph(ckpt)
    names = list(output_names(bool(ckpt.decision and ckpt.decision.flag_thresholds)))
    size = ckpt.input.image_size
    paths = {"dynamo": out / "dynamo.onnx", "torchscript": out / "torchscript.onnx"}
    start = time.perf_counter()
    export_onnx(ckpt, paths["dynamo"])
    seconds = {"dynamo": time.perf_counter() - start}
    start = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (torch.zeros((2, size, size, 3), dtype=torch.uint8),),
            str(paths["torchscript"]),
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}},
            opset_version=17,
            dynamo=False,
        )
    seconds["torchscript"] = time.perf_counter() - start
    sessions = {k: make_session(p) for k, p in paths.items()}
    times = time_side_by_side(sessions, images.evaluation.pixels[:8], repeats=repeats)
    for name, path in paths.items():
        model = onnx.load(str(path))
        parity = check_parity(ckpt, path, images.evaluation, tolerance=1.0)
        _line(
            bench="exporter",
            exporter=name,
            export_s=round(seconds[name], 2),
            nodes=len(model.graph.node),
            opset=next(o.version for o in model.opset_import if o.domain == ""),
            ort_ms_batch8=round(statistics.median(times[name]), 2),
            parity_max_abs_diff=parity["max_abs_diff"],
        )


def int8(ckpt: Checkpoint, images: ExportImages, fp32: Path, out: Path, batch: int, repeats: int) -> None:
    """Every quantization setting worth comparing, scored and timed against fp32."""
    from sklearn.metrics import roc_auc_score

    from model.session import make_session, run_batches
    from training.export.quantize import QuantSettings, quantize_int8, time_side_by_side, verdict_flips
    from training.metrics import reliability

    variants = {
        "U8S8 QDQ per-channel minmax, float heads (default)": QuantSettings(),
        "S8S8 QDQ per-channel (ORT's default types)": QuantSettings(activation_signed=True),
        "U8S8 QDQ per-tensor": QuantSettings(per_channel=False),
        "U8S8 QOperator per-channel": QuantSettings(quant_format="QOperator"),
        "S8S8 QOperator per-channel": QuantSettings(quant_format="QOperator", activation_signed=True),
        "U8S8 QDQ per-channel, heads quantized too": QuantSettings(float_heads=False),
        "U8S8 QDQ per-channel percentile": QuantSettings(calibration_method="percentile"),
    }
    x, y = images.evaluation.pixels, images.evaluation.labels
    ref = run_batches(make_session(fp32), x)
    pf = 1.0 - ref["p_genuine"]
    ood = ckpt.ood.stats
    ood_f = ood.score(ref["embedding"]) > ckpt.ood.threshold
    _line(
        bench="int8",
        variant="fp32",
        evaluation=images.evaluation.source,
        photos=len(x),
        calibration_photos=len(images.calibration),
        roc_auc=round(float(roc_auc_score(y, pf)), 4),
        ece=round(reliability(pf, y).ece, 4),
        mb=round(fp32.stat().st_size / 1e6, 2),
    )
    paths = {"fp32": fp32}
    for i, (name, settings) in enumerate(variants.items()):
        path = out / f"int8_{i}.onnx"
        start = time.perf_counter()
        quantize_int8(fp32, path, images.calibration.pixels, settings)
        seconds = time.perf_counter() - start
        got = run_batches(make_session(path), x)
        pq = 1.0 - got["p_genuine"]
        diff = np.abs(pq - pf)
        _line(
            bench="int8",
            variant=name,
            quantize_s=round(seconds, 1),
            roc_auc=round(float(roc_auc_score(y, pq)), 4),
            ece=round(reliability(pq, y).ece, 4),
            mean_abs_dp=round(float(diff.mean()), 4),
            max_abs_dp=round(float(diff.max()), 4),
            verdict_flips=verdict_flips(pf, pq, ckpt.decision),
            ood_flips=int(((ood.score(got["embedding"]) > ckpt.ood.threshold) != ood_f).sum()),
            mb=round(path.stat().st_size / 1e6, 2),
        )
        paths[name] = path
    sessions = {k: make_session(p) for k, p in paths.items()}
    for size in (1, batch):
        times = time_side_by_side(sessions, x[:size], repeats=repeats * (2 if size == 1 else 1))
        base = statistics.median(times["fp32"])
        for name, values in times.items():
            ms = statistics.median(values)
            _line(
                bench="latency", batch=size, variant=name, median_ms=round(ms, 2), speedup=round(base / ms, 2)
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--images", type=Path, default=None, help="Manifest instead of the run's split.")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--skip", choices=("exporter", "int8"), action="append", default=[])
    args = parser.parse_args()

    from training.checkpoint import load_checkpoint
    from training.data.photos import images_for_checkpoint
    from training.export.graph import export_onnx

    ckpt = load_checkpoint(args.checkpoint)
    images = images_for_checkpoint(ckpt, args.checkpoint, args.images)
    with tempfile.TemporaryDirectory(prefix="authlens-bench-export-") as tmp:
        out = Path(tmp)
        if "exporter" not in args.skip:
            exporters(ckpt, images, out, args.repeats)
        if "int8" not in args.skip:
            fp32 = out / "model.onnx"
            export_onnx(ckpt, fp32)
            int8(ckpt, images, fp32, out, args.batch, args.repeats)


if __name__ == "__main__":
    main()
