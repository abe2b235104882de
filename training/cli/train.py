"""``authlens train`` and ``authlens evaluate``.

Usage: ``authlens train --config configs/synthetic.yaml --set train.epochs=3``;
``authlens evaluate --checkpoint runs/synthetic/best.pt --split test``.

Several processes on CPU: ``torchrun --nproc_per_node 2 -m authlens train --config ...``.
Heavy modules (torch, timm, mlflow) are imported inside the commands, so ``authlens --help`` and
the serving commands stay light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from model.cliutil import fail, user_errors


def _user_error_types() -> tuple[type[BaseException], ...]:
    from model.configio import ConfigError
    from model.network import WeightsError
    from training.checkpoint import CheckpointError
    from training.data.dataset import DataError
    from training.data.manifest import ManifestError
    from training.train.run import RunError

    return (ConfigError, WeightsError, CheckpointError, ManifestError, DataError, RunError)


def train(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML config (configs/*.yaml); optional with --resume."),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a config value: section.key=value (repeatable)."),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            help="Continue a run exactly: 'last' for OUTPUT_DIR/NAME/last.pt, or a path to a last.pt.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Start over even if the run folder holds a run.")
    ] = False,
    evaluate_after: Annotated[
        bool | None,
        typer.Option("--evaluate/--no-evaluate", help="Evaluate best.pt on the test split at the end."),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
) -> None:
    """Fine-tune a model from a YAML config, calibrate it and (by default) evaluate it."""
    from model.configio import load_config
    from model.logs import setup_logging

    setup_logging()
    with user_errors(*_user_error_types()):
        from training.config import TrainConfig

        resume_arg: str | bool | None = None
        if resume is not None:
            resume_arg = True if resume == "last" else resume
        if config is None:
            if resume is None or resume == "last":
                raise fail(
                    "Give --config FILE (or --resume PATH/last.pt to continue a run with its saved config)."
                )
            saved = Path(resume)
            saved = (saved if saved.is_dir() else saved.parent) / "config.yaml"
            if not saved.is_file():
                raise fail(f"{saved} is missing; give the run's --config as well.")
            config = saved
        cfg = load_config(TrainConfig, config, overrides or [])
        if evaluate_after is not None:
            cfg = cfg.model_copy(
                update={"evaluate": cfg.evaluate.model_copy(update={"after_training": evaluate_after})}
            )
        if cfg.data.folds >= 2:
            _crossfit(cfg, config, resume=resume_arg is not None, force=force, progress=progress)
            return
        from training.train.run import run

        try:
            result = run(cfg, resume=resume_arg, force=force, show_progress=progress)
        except KeyboardInterrupt:
            last = Path(cfg.run.output_dir) / cfg.run.name / "last.pt"
            raise fail(
                f"Interrupted. Continue exactly where the last finished epoch left off with: "
                f"authlens train --config {config} --resume {last}",
                code=130,
            ) from None
    if not result.main:
        return
    from rich.console import Console

    console = Console(stderr=True)
    console.print(
        f"[bold green]done[/] best val AUC {result.best_auc:.4f} (epoch {result.best_epoch}), "
        f"{result.train_images_per_s:.1f} img/s, {result.wall_seconds / 60:.1f} min: {result.best}",
        highlight=False,
    )
    summary = result.extras.get("summary")
    if summary:
        console.print(_summary_line(summary), highlight=False)


def _crossfit(cfg, config: Path, *, resume: bool, force: bool, progress: bool) -> None:
    """``authlens train`` with ``data.folds`` >= 2: cross-fit, train the final model, report."""
    from rich.console import Console

    from training.train.crossfit import run_crossfit

    try:
        out = run_crossfit(cfg, resume=resume, force=force, show_progress=progress)
    except KeyboardInterrupt:
        raise fail(
            f"Interrupted. Finished folds are kept; continue with: authlens train --config {config} --resume last",
            code=130,
        ) from None
    console = Console(stderr=True)
    minutes = (sum(out["seconds"]["folds"]) + out["seconds"]["full"]) / 60
    console.print(f"[bold green]done[/] {minutes:.1f} min of training: {out['best']}", highlight=False)
    if out["report"] is not None:
        console.print(_summary_line(out["report"]["summary"], "out of fold"), highlight=False)


def _summary_line(s: dict, what: str = "test") -> str:
    """One console line of an evaluation summary.

    The metrics :data:`training.metrics.METRICS` gives a ``short`` label, in its order; the linear
    probe's after a bar when the summary has them.
    """
    from training.metrics import metrics_of

    def part(scope: str) -> str:
        shown = [m for m in metrics_of(scope) if m.short]
        return ", ".join(f"{m.short} {m.format(s.get(m.key))}" for m in shown)

    line = f"{what}: {part('photos')}"
    if any(m.key in s for m in metrics_of("probe")):
        line += f" | linear probe: {part('probe')}"
    return line


def evaluate(
    checkpoint: Annotated[
        Path, typer.Option("--checkpoint", help="A calibrated best.pt from authlens train.")
    ],
    split: Annotated[
        str, typer.Option("--split", help="Split of the run to evaluate: train, val or test.")
    ] = "test",
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest", help="Evaluate every photo of this manifest instead (e.g. new synthetic seeds)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Report folder (default: next to the checkpoint).")
    ] = None,
    probe: Annotated[
        bool | None,
        typer.Option(
            "--probe/--no-probe", help="Also fit the linear-probe baseline (default: as configured)."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=0, help="Image-loading worker processes.")
    ] = None,
    ood_manifest: Annotated[
        Path | None,
        typer.Option(
            "--ood-manifest", help="Photos the model has never seen the like of; reports how many it flags."
        ),
    ] = None,
) -> None:
    """Evaluate a checkpoint (and a linear-probe baseline) and write report.json, report.md and plots."""
    from model.logs import setup_logging

    setup_logging()
    if split not in ("train", "val", "test"):
        raise fail(f"Unknown split {split!r}. Allowed: train, val, test.")
    with user_errors(*_user_error_types()):
        from training.evaluate.run import evaluate_checkpoint

        report = evaluate_checkpoint(
            checkpoint,
            split=split,
            manifest=manifest,
            out_dir=out,
            probe=probe,
            workers=workers,
            ood_manifest=ood_manifest,
        )
    from rich.console import Console

    console = Console(stderr=True)
    console.print(_summary_line(report["summary"]), highlight=False)
    console.print(f"report: {report['files']['report_md']}", highlight=False)
