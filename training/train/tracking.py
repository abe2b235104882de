"""MLflow tracking, local by default (``mlruns/`` file store), or a no-op when disabled.

MLflow is imported only when tracking is on. Its usage telemetry is switched off before import
and the file store is allowed explicitly, so a local run never reaches the network.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from training.config import TrainConfig

log = logging.getLogger(__name__)


def tracking_uri(value: str) -> str:
    """A URI for MLflow: URIs pass through, plain paths become absolute ``file:`` URIs."""
    if "://" in value or value.startswith("sqlite:"):
        return value
    return Path(value).resolve().as_uri()


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


class Tracker:
    """Thin wrapper over the MLflow fluent API; every method is a no-op when disabled."""

    def __init__(self, mlflow: Any | None, run_id: str | None) -> None:
        self._mlflow = mlflow
        self.run_id = run_id

    @classmethod
    def create(cls, cfg: TrainConfig, *, enabled: bool, run_id: str | None = None) -> Tracker:
        """Start (or, with ``run_id``, reopen) the MLflow run of ``cfg.run.name``."""
        if not enabled:
            return cls(None, run_id)
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        os.environ.setdefault("DO_NOT_TRACK", "true")
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        import mlflow

        mlflow.set_tracking_uri(tracking_uri(cfg.tracking.tracking_uri))
        mlflow.set_experiment(cfg.tracking.experiment)
        if run_id is not None:
            try:
                active = mlflow.start_run(run_id=run_id)
            except Exception:  # run deleted or store moved: track the rest in a new run
                log.warning("mlflow_run_missing", extra={"fields": {"run_id": run_id}})
                active = mlflow.start_run(run_name=cfg.run.name)
        else:
            active = mlflow.start_run(run_name=cfg.run.name)
        return cls(mlflow, active.info.run_id)

    @property
    def enabled(self) -> bool:
        return self._mlflow is not None

    def log_params(self, cfg: TrainConfig, data: dict[str, Any]) -> None:
        if self._mlflow is None:
            return
        flat: dict[str, Any] = {}
        _flatten("", cfg.model_dump(mode="json"), flat)
        _flatten("data_info", {k: v for k, v in data.items() if k != "classes"}, flat)
        self._mlflow.log_params({k: str(v)[:500] for k, v in flat.items()})

    def log_metrics(self, metrics: dict[str, Any], *, step: int) -> None:
        if self._mlflow is None:
            return
        clean = {
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
        }
        self._mlflow.log_metrics(clean, step=step)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self._mlflow is not None and path.exists():
            if path.is_dir():
                self._mlflow.log_artifacts(str(path), artifact_path=artifact_path)
            else:
                self._mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        if self._mlflow is not None:
            self._mlflow.end_run(status=status)
            self._mlflow = None
