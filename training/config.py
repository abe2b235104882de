"""Typed training configuration (``configs/*.yaml``).

Usage: ``authlens train --config configs/synthetic.yaml --set train.epochs=3``

Every section forbids unknown keys; :func:`model.configio.load_config` names the offending key
and the allowed ones. The resolved config is saved with every run and bundle.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from model.imaging import ResizePolicy


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunConfig(_Section):
    name: str = Field(default="authlens", min_length=1, description="Run and bundle name.")
    output_dir: str = Field(default="runs", description="Runs are written to OUTPUT_DIR/NAME.")
    seed: int = Field(default=0, ge=0)


class DataConfig(_Section):
    manifest: str = Field(description="Manifest file (CSV/JSONL) or folder with genuine/ and counterfeit/.")
    extra_manifests: list[str] = Field(
        default_factory=list,
        description="More manifests read beside `manifest`, e.g. reviewed decisions (`authlens data export-reviews`).",
    )
    image_size: int = Field(
        default=224,
        ge=32,
        le=1024,
        multiple_of=32,
        description="Square model input side; a multiple of 32, the backbone's stride, so each map "
        "cell covers a whole 32-pixel square of the input.",
    )
    resize: ResizePolicy = "stretch"
    draft_size: int = Field(
        default=448, ge=32, description="JPEGs decode at reduced scale down to this side."
    )
    val_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    test_fraction: float = Field(default=0.15, ge=0, lt=0.5)
    split_seed: int = Field(default=0, ge=0)
    num_workers: int = Field(default=2, ge=0)
    split: Literal["auto", "manifest", "random"] = Field(
        default="auto",
        description="'manifest' uses the manifest's split column, 'random' splits with "
        "training.data.split (grouped, stratified), 'auto' uses the column when every row has one.",
    )
    cache_decoded: bool = Field(
        default=True,
        description="Keep decoded training photos in memory (uint8) so later epochs skip JPEG decoding.",
    )
    cache_max_gb: float = Field(
        default=3.0, gt=0, description="Skip the cache when the decoded training photos would exceed this."
    )
    folds: int = Field(
        default=0,
        ge=0,
        description="K >= 2: K-fold cross-fitting over every photo (folds grouped by near-duplicate "
        "cluster and item, stratified by label): the report, temperature and thresholds come from "
        "out-of-fold predictions, then one model is trained on all photos. 0: one train/val/test split.",
    )

    @field_validator("folds")
    @classmethod
    def _folds(cls, v: int) -> int:
        if v == 1:
            raise ValueError("folds must be 0 (one split) or at least 2")
        return v


class ModelConfig(_Section):
    backbone: str = Field(default="tf_efficientnet_lite0", description="Any timm model name.")
    pretrained: str = Field(
        default="imagenet",
        description="'imagenet' (offline: tf_efficientnet_lite0, _lite1, _lite2), a checkpoint path, or 'none'.",
    )
    drop_rate: float = Field(default=0.2, ge=0, lt=1)
    pool: Literal["lse", "mean"] = Field(
        default="lse",
        description="How the heads' maps become logits: 'lse' (smooth maximum: any bad region "
        "makes a fake) or 'mean' (average).",
    )
    pool_r: float = Field(default=1.0, gt=0, le=50, description="Sharpness of 'lse' pooling.")
    ood_features: Literal["imagenet", "finetuned"] = Field(
        default="imagenet",
        description="Out-of-distribution features: a frozen copy of the pretrained backbone (keeps "
        "telling foreign photos apart after fine-tuning; a second backbone pass at inference) or "
        "the fine-tuned backbone's.",
    )
    freeze: list[str] = Field(
        default_factory=list,
        description="Backbone parts kept as pretrained (timm submodule names, e.g. conv_stem, bn1, "
        "blocks.0): fewer gradients to compute, so faster steps on a CPU.",
    )


class OptimConfig(_Section):
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.05, ge=0)
    warmup_epochs: float = Field(default=1.0, ge=0)
    ema_decay: float = Field(default=0.998, ge=0, lt=1)
    grad_clip: float = Field(default=2.0, gt=0)
    flag_loss_weight: float = Field(default=1.0, ge=0)
    dense_loss_weight: float = Field(
        default=1.0,
        ge=0,
        description="Weight of the per-location loss on the maps for photos whose tells all have boxes.",
    )
    dense_pos_weight: float = Field(
        default=4.0,
        gt=0,
        description="Weight of tell cells against the many clean cells around them in the per-location loss.",
    )
    channels_last: bool = True
    threads: int = Field(default=0, ge=0, description="torch threads; 0 = all cores.")
    head_lr_scale: float = Field(
        default=10.0, gt=0, description="The freshly initialised heads learn this many times faster."
    )
    min_lr_ratio: float = Field(default=0.01, ge=0, le=1, description="Cosine floor as a fraction of lr.")
    class_balance: bool = Field(
        default=True, description="Weight the authenticity loss so both classes count equally."
    )
    ema: bool = True
    eval_batch_size: int = Field(default=64, ge=1)
    select: Literal["best", "last"] = Field(
        default="best",
        description="Which weights become best.pt: those of the best validation AUC, or the last "
        "epoch's. Cross-fitting always keeps the last: choosing an epoch on the held-out fold would "
        "make its predictions optimistic.",
    )
    layer_decay: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Layer-wise learning-rate decay: each backbone layer below the top learns this "
        "factor slower than the one above it (timm's grouping). None: one rate for the backbone.",
    )
    linear_probe_init: bool = Field(
        default=False,
        description="Start the authenticity head from logistic regression on the frozen pretrained "
        "features of the training photos (LP-FT, Kumar et al. 2022), so fine-tuning starts from a "
        "good head instead of distorting the features to fit a random one.",
    )
    linear_probe_c: float = Field(
        default=0.01,
        gt=0,
        description="Inverse L2 strength of that logistic regression (standardised features).",
    )


class AugmentConfig(_Section):
    """Training augmentation (see :mod:`training.data.augment` for why each one is there)."""

    enabled: bool = True
    train_crop: int | None = Field(
        default=None,
        ge=32,
        multiple_of=32,
        description="Train on random square crops of this side from the photo resized to "
        "data.image_size; evaluation and serving see the whole photo at data.image_size (the heads "
        "are fully convolutional). None: train on the whole photo.",
    )
    crop: float = Field(default=0.12, ge=0, lt=0.5, description="Max share cut from each border.")
    perspective: float = Field(default=0.05, ge=0, le=0.2, description="Max corner shift (share of side).")
    rotate: float = Field(default=8.0, ge=0, le=45, description="Max rotation in degrees.")
    hflip: bool = Field(default=False, description="Mirror images (off where text or logos are tells).")
    brightness: float = Field(default=0.2, ge=0, le=0.5)
    contrast: float = Field(default=0.2, ge=0, le=0.5)
    gamma: float = Field(default=0.2, ge=0, le=0.5)
    blur_p: float = Field(default=0.15, ge=0, le=1)
    noise_p: float = Field(default=0.2, ge=0, le=1)
    jpeg_p: float = Field(default=0.3, ge=0, le=1)
    jpeg_quality_min: int = Field(default=50, ge=1, le=100)


class EvaluateConfig(_Section):
    """What ``authlens train`` evaluates when it ends, and how (``authlens evaluate`` uses it too)."""

    after_training: bool = Field(default=True, description="Evaluate best.pt on `split` at the end.")
    split: Literal["train", "val", "test"] = "test"
    probe: bool = Field(default=True, description="Also fit and report the linear-probe baseline.")
    probe_max_train: int = Field(default=5000, ge=10, description="Probe fits on at most this many images.")
    ece_bins: int = Field(default=15, ge=2)
    worst_errors: int = Field(default=12, ge=0, description="Images in the worst-errors grid.")


class CalibrationConfig(_Section):
    max_false_accusation_rate: float = Field(default=0.01, gt=0, lt=1)
    max_miss_rate: float = Field(default=0.05, gt=0, lt=1)
    far_confidence: float | None = Field(
        default=0.95,
        gt=0.5,
        lt=1,
        description="The counterfeit threshold keeps the false-accusation rate within "
        "max_false_accusation_rate with this confidence (Clopper-Pearson bound on the held-out "
        "genuine photos); None: on the held-out photos only (a point estimate).",
    )
    flag_precision: float = Field(
        default=0.8, gt=0, le=1, description="A flag is raised only where it was right this often (held out)."
    )
    min_flag_positives: int = Field(
        default=5, ge=1, description="A flag needs this many held-out positives to be kept at all."
    )
    ood_method: Literal["knn", "mahalanobis"] = Field(
        default="knn",
        description="Out-of-distribution score of the embedding: k-th nearest-neighbour cosine "
        "distance to the training photos, or Mahalanobis distance to the class means.",
    )
    ood_k: int = Field(default=5, ge=1, description="Neighbour of the kNN score.")
    ood_max_reference: int = Field(
        default=4096, ge=16, description="Training embeddings kept in the bundle for the kNN score."
    )
    ood_quantile: float = Field(
        default=0.98,
        gt=0.5,
        le=1,
        description="Share of held-out in-distribution photos the OOD threshold lets through.",
    )
    min_image_side: int = Field(default=128, ge=1)
    min_sharpness: float | None = Field(
        default=None,
        ge=0,
        description="Photos less sharp than this are 'too_blurry'; default: fitted on the training photos.",
    )
    sharpness_quantile: float = Field(
        default=0.005,
        ge=0,
        lt=0.5,
        description="With min_sharpness unset: the share of training photos that would count as too blurry.",
    )


class TrackingConfig(_Section):
    mlflow: bool = True
    tracking_uri: str = Field(default="mlruns", description="Local folder or MLflow URI.")
    experiment: str = "authlens"


class ExportConfig(_Section):
    opset: int = Field(default=17, ge=17)
    int8: bool = False
    max_auc_drop: float = Field(default=0.01, ge=0)
    parity_tolerance: float = Field(default=1e-4, gt=0)


class TrainConfig(_Section):
    """A whole training run."""

    run: RunConfig = RunConfig()
    data: DataConfig
    model: ModelConfig = ModelConfig()
    train: OptimConfig = OptimConfig()
    augment: AugmentConfig = AugmentConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    tracking: TrackingConfig = TrackingConfig()
    export: ExportConfig = ExportConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
