"""From manifest records to batches: splits, decoding, caching and deterministic sampling.

Every photo goes through :func:`model.imaging.decode_image` (the path serving uses). Evaluation
resizes with :func:`model.imaging.resize_for_model`; training applies
:class:`training.data.augment.Augmenter`, which ends with the same resize.

Randomness is keyed, not streamed: the sampler's order depends on ``(seed, epoch)`` and each
sample's augmentation on ``(seed, epoch, index)``. A run therefore sees the same batches whatever
the number of loader workers or processes, and ``--resume`` continues exactly.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from model.flags import FLAG_NAMES, LABELS, flag_index
from model.imaging import DecodedImage, Geometry, ImageError, decode_image, resize_for_model
from training.config import DataConfig
from training.data.augment import Augmenter
from training.data.manifest import PRODUCT_BOX, Record

log = logging.getLogger(__name__)

SPLIT_FILE = "split.csv"


class DataError(ValueError):
    """A dataset or split that cannot train a model; the message says what to change."""


@dataclass(frozen=True)
class Splits:
    """The records of one run, by split (each record's ``split`` field set accordingly)."""

    train: list[Record]
    val: list[Record]
    test: list[Record]

    def get(self, name: str) -> list[Record]:
        """Records of split ``name`` (``train``, ``val`` or ``test``)."""
        if name not in ("train", "val", "test"):
            raise DataError(f"Unknown split {name!r}. Allowed: train, val, test.")
        return list(getattr(self, name))

    @property
    def all(self) -> list[Record]:
        return [*self.train, *self.val, *self.test]


def label_of(record: Record) -> int:
    """1 for counterfeit, 0 for genuine (index in :data:`model.flags.LABELS`)."""
    return LABELS.index(record.label)


def flag_target(record: Record) -> tuple[np.ndarray, float]:
    """``(F,)`` 0/1 flag vector and 1.0, or zeros and 0.0 when the photo has no flag labels."""
    target = np.zeros(len(FLAG_NAMES), dtype=np.float32)
    if record.flags is None:
        return target, 0.0
    for name in record.flags:
        target[flag_index(name)] = 1.0
    return target, 1.0


def _describe(records: Sequence[Record]) -> str:
    counts = Counter(r.label for r in records)
    return ", ".join(f"{counts.get(label, 0)} {label}" for label in LABELS)


def check_split(name: str, records: Sequence[Record], *, hint: str) -> None:
    """Refuse a split that is empty or lacks a class (AUC and calibration need both).

    Raises:
        DataError: naming the split, its counts and ``hint`` (how to fix it).
    """
    if not records:
        raise DataError(f"The {name} split is empty. {hint}")
    labels = {r.label for r in records}
    missing = [label for label in LABELS if label not in labels]
    if missing:
        raise DataError(f"The {name} split has no {missing[0]} photos ({_describe(records)}). {hint}")


def make_splits(records: list[Record], cfg: DataConfig, *, need_test: bool) -> Splits:
    """Split records as ``cfg.split`` says and check that each split can be used.

    Raises:
        DataError: a single-class dataset, a missing split column, or an empty/one-class split.
    """
    if not records:
        raise DataError(f"The manifest {cfg.manifest} has no photos.")
    labels = Counter(r.label for r in records)
    if len(labels) < 2:
        only = next(iter(labels))
        raise DataError(
            f"The dataset {cfg.manifest} has only {only} photos ({labels[only]}); training needs both "
            f"{' and '.join(LABELS)} photos. Add the other class or check the label column."
        )
    has_column = all(r.split is not None for r in records)
    mode = cfg.split
    if mode == "auto":
        mode = "manifest" if has_column else "random"
    if mode == "manifest":
        if not has_column:
            missing = sum(r.split is None for r in records)
            raise DataError(
                f"data.split is 'manifest' but {missing} of {len(records)} rows of {cfg.manifest} have no "
                "split; fill the split column (authlens data split) or set data.split=random."
            )
        assigned = records
    else:
        from training.data.split import split_records

        assigned = split_records(
            records, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=cfg.split_seed
        )
        if isinstance(assigned, dict):  # {split: [records]} form
            assigned = [replace(r, split=name) for name, rs in assigned.items() for r in rs]
    by_split: dict[str, list] = {"train": [], "val": [], "test": []}
    for r in assigned:
        if r.split not in by_split:
            raise DataError(
                f"{cfg.manifest} line {r.line}: split {r.split!r} is not one of train, val, test."
            )
        by_split[r.split].append(r)
    hint = (
        "Use a manifest whose split column gives every split both classes, or set data.split=random."
        if mode == "manifest"
        else f"Raise data.val_fraction/data.test_fraction (now {cfg.val_fraction}/{cfg.test_fraction}) "
        "or add photos of the missing class."
    )
    check_split("train", by_split["train"], hint=hint)
    check_split("val", by_split["val"], hint=hint)
    if need_test:
        check_split(
            "test",
            by_split["test"],
            hint=hint + " Or set evaluate.after_training=false to skip the final test evaluation.",
        )
    return Splits(**by_split)


def save_split(splits: Splits, path: Path) -> None:
    """Write the run's split as a manifest (``split`` column filled) next to the run."""
    from training.data.manifest import write_manifest

    write_manifest(splits.all, path)


def read_image(record: Record, *, draft_size: int) -> DecodedImage:
    """Decode a record's photo with the serving decoder.

    Raises:
        DataError: the file is missing or not a usable image (names the file and the manifest line).
    """
    path = Path(record.file)
    try:
        return decode_image(path.read_bytes(), draft_size=draft_size)
    except FileNotFoundError:
        raise DataError(f"{path} (manifest line {record.line}) does not exist.") from None
    except ImageError as exc:
        raise DataError(f"{path} (manifest line {record.line}): {exc.message}") from None


def scale_boxes(record: Record, decoded: DecodedImage) -> np.ndarray:
    """The record's boxes in decoded-pixel coordinates, ``(K, 4)`` float32 (x0, y0, x1, y1)."""
    if not record.boxes:
        return np.zeros((0, 4), dtype=np.float32)
    sx, sy = decoded.scale
    return np.array([(b.x0 / sx, b.y0 / sy, b.x1 / sx, b.y1 / sy) for b in record.boxes], dtype=np.float32)


MAX_TELL_BOXES = 16
"""Tell boxes a training sample carries (padded); a photo with more is trained without them."""


def tell_boxes(record: Record) -> dict[int, int] | None:
    """``{record box index: flag index}`` of the record's tell boxes, when they can be targets.

    Dense (per-location) supervision needs to know where *every* tell of the photo is: that holds
    for flag-labelled photos (``flags`` not ``None``) each of whose flags has at least one box.
    Genuine photos with ``flags=()`` qualify with no boxes: no location of theirs is a tell. A
    counterfeit with ``flags=()`` does not (its tells are somewhere, unnamed). Returns ``None``
    for any photo that does not qualify.
    """
    if record.flags is None or (record.label != "genuine" and not record.flags):
        return None  # not labelled, or a fake whose tells nobody named: nowhere to point at
    tells = {i: flag_index(b.name) for i, b in enumerate(record.boxes) if b.name != PRODUCT_BOX}
    if {flag_index(f) for f in record.flags} - set(tells.values()):
        return None
    return tells


class TrainDataset(Dataset):
    """Augmented training samples; keys come from :class:`EpochSampler` (``epoch * n + index``).

    Each item is ``(pixels (H, W, 3) uint8, label, flags (F,), has_flags, boxes, dense, index)``:
    ``boxes`` ``(MAX_TELL_BOXES, 5)`` holds ``(flag index, x0, y0, x1, y1)`` rows in model-input
    pixels (flag index -1 pads), and ``dense`` is 1.0 when they locate every tell of the photo
    (see :func:`tell_boxes`), so the maps can be trained cell by cell.
    """

    def __init__(
        self,
        records: Sequence[Record],
        *,
        augmenter: Augmenter,
        draft_size: int,
        seed: int,
        cache: list[DecodedImage] | None = None,
    ) -> None:
        self.records = list(records)
        self.augmenter = augmenter
        self.draft_size = draft_size
        self.seed = seed
        self.cache = cache
        self.labels = np.array([label_of(r) for r in self.records], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int) -> tuple[torch.Tensor, float, torch.Tensor, float, int]:
        epoch, index = divmod(int(key), len(self.records))
        record = self.records[index]
        decoded = (
            self.cache[index] if self.cache is not None else read_image(record, draft_size=self.draft_size)
        )
        rng_seed = np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0]
        scaled = scale_boxes(record, decoded)
        pixels, moved, ids = self.augmenter.apply(decoded.pixels, scaled, seed=int(rng_seed))
        flags, has_flags = flag_target(record)
        pixels = pixels if pixels.flags.writeable else pixels.copy()
        boxes = np.zeros((MAX_TELL_BOXES, 5), np.float32)
        boxes[:, 0] = -1
        dense = 0.0
        tells = tell_boxes(record)
        if tells is not None:
            rows = [(tells[int(i)], *moved[j]) for j, i in enumerate(ids) if int(i) in tells]
            # every flag keeps a box through the augmentation (a box pushed out loses its evidence)
            if len(rows) <= MAX_TELL_BOXES and {r[0] for r in rows} == set(tells.values()):
                dense = 1.0
                if rows:
                    boxes[: len(rows)] = np.array(rows, np.float32)
        return (
            torch.from_numpy(pixels),
            float(self.labels[index]),
            torch.from_numpy(flags),
            has_flags,
            torch.from_numpy(boxes),
            dense,
            index,
        )


class EvalDataset(Dataset):
    """Un-augmented model inputs, exactly as serving prepares them.

    Each item is ``(pixels (H, W, 3) uint8, Geometry, index)``: the geometry maps boxes back to
    the original photo.
    """

    def __init__(self, records: Sequence[Record], *, image_size: int, resize: str, draft_size: int) -> None:
        self.records = list(records)
        self.size = (image_size, image_size)
        self.resize = resize
        self.draft_size = draft_size

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[np.ndarray, Geometry, int]:
        decoded = read_image(self.records[index], draft_size=self.draft_size)
        pixels, geometry = resize_for_model(decoded, self.size, policy=self.resize)  # type: ignore[arg-type]
        return pixels, geometry, index


def worker_init(_: int) -> None:
    """``worker_init_fn`` for loaders: one thread per worker, the cores are the model's."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _as_list(batch: list) -> list:
    return batch  # Geometry objects do not collate; keep the batch a list of items


def load_with_geometry(
    records: Sequence[Record], *, image_size: int, resize: str, draft_size: int, workers: int
) -> tuple[torch.Tensor, list[Geometry]]:
    """Decode and resize every record once, keeping the geometry of each (to map boxes to originals).

    Returns:
        ``(N, H, W, 3)`` uint8 model inputs and ``N`` geometries, in record order.

    Raises:
        DataError: a missing or unusable photo (see :func:`read_image`).
    """
    ds = EvalDataset(records, image_size=image_size, resize=resize, draft_size=draft_size)
    inputs = torch.empty((len(records), image_size, image_size, 3), dtype=torch.uint8)
    geometries: list[Geometry | None] = [None] * len(records)
    loader = DataLoader(
        ds,
        batch_size=16,
        num_workers=workers,
        collate_fn=_as_list,
        worker_init_fn=worker_init if workers else None,
    )
    for batch in loader:
        for pixels, geometry, index in batch:
            inputs[index] = torch.from_numpy(np.array(pixels))  # Pillow's arrays are read-only
            geometries[index] = geometry
    return inputs, geometries  # type: ignore[return-value]


def load_inputs(
    records: Sequence[Record], *, image_size: int, resize: str, draft_size: int, workers: int
) -> torch.Tensor:
    """Decode and resize every record once: ``(N, H, W, 3)`` uint8 model inputs (:func:`load_with_geometry`)."""
    return load_with_geometry(
        records, image_size=image_size, resize=resize, draft_size=draft_size, workers=workers
    )[0]


class EpochSampler(Sampler[int]):
    """Seeded shuffle per epoch, sharded across processes; yields ``epoch * n + index`` keys.

    Every rank gets ``ceil(n / world)`` keys (the permutation wraps around to pad), so all ranks
    run the same number of steps, as DDP requires.
    """

    def __init__(self, n: int, *, seed: int, rank: int = 0, world: int = 1, shuffle: bool = True) -> None:
        self.n, self.seed, self.rank, self.world, self.shuffle = n, seed, rank, world, shuffle
        self.epoch = 0
        self.per_rank = math.ceil(n / world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.per_rank * self.world
        order = (order * math.ceil(total / self.n))[:total]
        base = self.epoch * self.n
        return iter(base + i for i in order[self.rank : total : self.world])


def decode_all(records: Sequence[Record], *, draft_size: int, threads: int = 2) -> list[DecodedImage]:
    """Decode every record once (Pillow releases the GIL, so threads overlap)."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return list(pool.map(lambda r: read_image(r, draft_size=draft_size), records))


def class_counts(records: Sequence[Record]) -> dict[str, int]:
    """Photos per label, every label present (zeros included)."""
    counts = Counter(r.label for r in records)
    return {label: counts.get(label, 0) for label in LABELS}


def flag_counts(records: Sequence[Record]) -> dict[str, int]:
    """Positive photos per flag among flag-labelled records."""
    counts: Counter[str] = Counter()
    for r in records:
        if r.flags:
            counts.update(r.flags)
    return {name: counts.get(name, 0) for name in FLAG_NAMES}
