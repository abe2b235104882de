"""What ``make bench`` measures: the bundle, its network in PyTorch eager, and comparison graphs.

The bundle is ``bundles/sneakers`` when it exists; otherwise a random-weight stand-in of
``configs/sneakers.yaml`` (same backbone, input size, draft size, pooling, frozen reference
backbone for the OOD features) is exported in a few tens of seconds. Speed does not depend on the
weights: the arithmetic of a trained and a random network of one architecture is the same.

The eager network (``PyTorch eager`` figures, the naive baseline server) is the bundle's
architecture rebuilt from ``bundle.json`` (``provenance.resolved_config``, else the timm model
name), with the checkpoint's weights when one is given, else random ones.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model.bundle import Bundle, Decision, load_bundle

if TYPE_CHECKING:
    import torch

    from training.checkpoint import Checkpoint

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = ROOT / "bundles" / "sneakers"
STAND_IN_CONFIG = ROOT / "configs" / "sneakers.yaml"
STAND_IN_REFERENCE_ROWS = 700  # about the sneakers training photos: the kNN OOD reference serving scans
WEIGHTS_FILE = "weights.pt"  # beside a stand-in bundle: the eager network loads the same weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Subject:
    """The bundle measured and where it came from."""

    bundle_dir: Path
    origin: str  # "bundle" (given or bundles/sneakers) or "stand-in" (exported by the harness)
    note: str
    weights: Path | None = None  # eager network weights (a state dict of AuthLensNet), if known

    def bundle(self) -> Bundle:
        return load_bundle(self.bundle_dir)


def random_checkpoint(
    spec: Any,
    *,
    image_size: int,
    resize: str = "stretch",
    draft_size: int | None = None,
    config: dict[str, Any] | None = None,
    ood_k: int = 5,
    seed: int = 0,
) -> Checkpoint:
    """A calibrated checkpoint of the network ``spec`` (a ``NetworkSpec``) with random weights.

    Decided like the sneakers model (no flag labels, so no flag outputs); the kNN OOD reference has
    :data:`STAND_IN_REFERENCE_ROWS` random rows, about what serving scans for that model.
    """
    import torch

    from model.network import AuthLensNet
    from model.ood import KnnOOD, l2_normalise
    from training.checkpoint import Checkpoint, InputSettings, OODReference

    torch.manual_seed(seed)
    net = AuthLensNet(spec).eval()
    rng = np.random.default_rng(seed)
    reference = l2_normalise(rng.normal(size=(STAND_IN_REFERENCE_ROWS, net.embedding_dim)))
    decision = Decision(
        temperature=1.3,
        counterfeit_threshold=0.6,
        genuine_threshold=0.4,
        max_false_accusation_rate=0.01,
        max_miss_rate=0.05,
        flag_thresholds={},
        min_image_side=32,
        min_sharpness=0.0,
    )
    return Checkpoint(
        spec=spec,
        state_dict=net.state_dict(),
        config=config or {},
        input=InputSettings(
            image_size=image_size,
            resize=resize,
            draft_size=draft_size or image_size,
            mean=(net.mean[0], net.mean[1], net.mean[2]),
            std=(net.std[0], net.std[1], net.std[2]),
        ),
        decision=decision,
        ood=OODReference(
            stats=KnnOOD(reference=reference.astype(np.float32), k=ood_k), threshold=1e9, quantile=0.99
        ),
        data={"manifest_hash": "0" * 64, "n_train": 0},
        metrics={},
        epoch=0,
        git_commit="bench",
    )


def stand_in_checkpoint(config: Path = STAND_IN_CONFIG, *, image_size: int | None = None) -> Checkpoint:
    """A random-weight checkpoint of ``config``'s network and input (``pretrained: none``).

    Args:
        config: A training config; its model and data sections set the architecture and input.
        image_size: Override ``data.image_size`` and ``data.draft_size`` (the smoke test uses small inputs).
    """
    from model.configio import load_config
    from training.config import TrainConfig
    from training.train.startup import network_spec

    overrides = ["model.pretrained=none"]
    if image_size is not None:
        overrides += [f"data.image_size={image_size}", f"data.draft_size={image_size}"]
    cfg = load_config(TrainConfig, config, overrides)
    return random_checkpoint(
        network_spec(cfg),
        image_size=cfg.data.image_size,
        resize=cfg.data.resize,
        draft_size=cfg.data.draft_size,
        config=cfg.model_dump(mode="json"),
        ood_k=cfg.calibration.ood_k,
    )


def variant_graph(bundle: Bundle, out: Path, **spec_changes: Any) -> tuple[Any, Path]:
    """Export the bundle's architecture changed by ``spec_changes`` (e.g. ``ood_features="finetuned"``)
    with random weights to ``out``; returns its ``NetworkSpec`` and the graph's path."""
    from training.export.graph import export_onnx

    spec = dataclasses.replace(bundle_spec(bundle), **spec_changes)
    size = bundle.manifest.input
    ckpt = random_checkpoint(spec, image_size=size.height, resize=size.resize, draft_size=size.draft_size)
    export_onnx(ckpt, out)
    return spec, out


def export_stand_in(out_dir: Path, *, image_size: int | None = None) -> Subject:
    """Export the random-weight stand-in of ``configs/sneakers.yaml`` into ``out_dir``."""
    import torch

    from training.export.bundle import export_bundle
    from training.export.options import ExportOptions

    ckpt = stand_in_checkpoint(image_size=image_size)
    export_bundle(
        ckpt, out_dir, name="sneakers-stand-in", version="bench", options=ExportOptions(overwrite=True)
    )
    weights = out_dir.parent / f"{out_dir.name}-{WEIGHTS_FILE}"
    torch.save(ckpt.state_dict, weights)
    size = ckpt.input.image_size
    return Subject(
        out_dir,
        "stand-in",
        f"random-weight stand-in of configs/sneakers.yaml at {size} px, exported by the harness "
        f"({DEFAULT_BUNDLE.relative_to(ROOT)} absent); speed figures only, no accuracy",
        weights,
    )


def resolve_subject(bundle: Path | None, work: Path, *, image_size: int | None = None) -> Subject:
    """The bundle to measure: ``bundle`` if given, else ``bundles/sneakers``, else a stand-in
    exported into ``work``."""
    if bundle is not None:
        return Subject(Path(bundle), "bundle", f"bundle {bundle}")
    if (DEFAULT_BUNDLE / "bundle.json").is_file():
        return Subject(DEFAULT_BUNDLE, "bundle", f"{DEFAULT_BUNDLE.relative_to(ROOT)} as it ships")
    return export_stand_in(work / "stand-in", image_size=image_size)


def bundle_spec(bundle: Bundle) -> Any:  # -> model.network.NetworkSpec
    """The network architecture of ``bundle``, with ``pretrained: none``."""
    from model.network import NetworkSpec
    from training.config import TrainConfig
    from training.train.startup import network_spec

    provenance = bundle.manifest.provenance
    resolved = getattr(provenance, "resolved_config", None) or {}
    if resolved.get("model"):
        try:
            spec = network_spec(TrainConfig.model_validate(resolved))
            return dataclasses.replace(spec, pretrained="none")
        except ValueError as exc:
            log.warning("bundle_spec: resolved_config does not validate (%s); using the timm model name", exc)
    return NetworkSpec(backbone=provenance.timm_model, pretrained="none", drop_rate=0.0)


def eager_graph(bundle: Bundle, weights: Path | None = None, spec: Any = None) -> torch.nn.Module:
    """The bundle's serving graph in PyTorch eager (uint8 NHWC in), eval mode.

    Args:
        bundle: The bundle whose architecture, temperature and flags are rebuilt.
        weights: A state dict of the network; random weights when ``None``.
        spec: Another architecture (a ``NetworkSpec``) instead of the bundle's.
    """
    import torch

    from model.flags import FLAG_INDEX
    from model.network import AuthLensNet, ServingGraph

    net = AuthLensNet(spec if spec is not None else bundle_spec(bundle))
    if weights is not None:
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    flags = [FLAG_INDEX[f] for f in bundle.manifest.flags]
    return ServingGraph(net, temperature=bundle.manifest.decision.temperature, flags=flags).eval()
