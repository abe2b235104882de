"""Leak-free train/val/test splits: stratified by label, grouped by item or near-duplicate cluster.

No physical item and no copy of a photo may sit in two splits, or validation and test figures
measure memory instead of judgement. Photos are therefore grouped first (same ``item_id``; and,
for photos without one, the near-duplicate clusters of :mod:`training.data.dedupe`), and whole
groups are dealt to the splits so that each split gets its share of every label.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from model.flags import LABELS
from training.data.dedupe import (
    DUPLICATE_THRESHOLD,
    clusters,
    file_digests,
    hash_files,
    identical_pairs,
    near_duplicate_pairs,
)
from training.data.manifest import SPLITS, Record, common_root, relative_name


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
        raise ValueError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must each be in [0, 1) "
            "and leave a non-empty train share (their sum below 1)."
        )


def find_duplicate_pairs(
    records: Sequence[Record], *, threshold: int = DUPLICATE_THRESHOLD
) -> list[tuple[int, int]]:
    """Hash every photo and return the index pairs within ``threshold`` bits (unreadable photos skipped)."""
    hashes, ok = hash_files([r.file for r in records])
    return [(p.i, p.j) for p in near_duplicate_pairs(hashes, threshold=threshold, mask=ok)]


def group_records(
    records: Sequence[Record],
    *,
    threshold: int = DUPLICATE_THRESHOLD,
    duplicate_pairs: Sequence[tuple[int, int]] | None = None,
) -> np.ndarray:
    """Group label per record: same ``item_id``, byte-identical files, or near-duplicates where an
    ``item_id`` is missing.

    Args:
        records: The photos.
        threshold: Near-duplicate distance in bits (see :mod:`training.data.dedupe`).
        duplicate_pairs: Pairs of indices already known to be near-duplicates; when ``None`` and
            some record lacks an ``item_id``, every photo is hashed (unreadable ones stay alone).

    Returns:
        ``(N,)`` int group labels.
    """
    edges: list[tuple[int, int]] = []
    first_of_item: dict[str, int] = {}
    for k, r in enumerate(records):
        if r.item_id is not None:
            edges.append((first_of_item.setdefault(r.item_id, k), k))
    if duplicate_pairs is None and any(r.item_id is None for r in records):
        duplicate_pairs = find_duplicate_pairs(records, threshold=threshold)
    for i, j in duplicate_pairs or ():
        # Two look-alike photos of distinct named items stay apart: the item ids are the stronger
        # statement (the synthetic set's items differ only in their tells, so pHash pairs them).
        if records[i].item_id is None or records[j].item_id is None:
            edges.append((i, j))
    # ... but the same file content under two ids is one photo, and must not straddle splits.
    edges += identical_pairs(file_digests([r.file for r in records]))
    return clusters(len(records), edges)


def _place_preset_groups(
    records: Sequence[Record],
    members: dict[int, list[int]],
    current: dict[str, dict[str, float]],
    seed: int,
) -> tuple[dict[int, str], list[tuple[int, str, int]]]:
    """Send each group holding a preset split to its most common one, and key the other groups.

    Args:
        records: The photos.
        members: Record indices per group.
        current: Photos per split and label so far; the preset groups' photos are added.
        seed: Varies the order of the free groups.

    Returns:
        ``(split per preset group, free groups)``; a free group is ``(-size, seeded key, group)``,
        so that sorting puts the largest groups first, then a seeded shuffle that depends on the
        records' relative file names only.
    """
    assigned: dict[int, str] = {}
    root = common_root(records)
    free: list[tuple[int, str, int]] = []
    for g, idx in members.items():
        preset = Counter(records[k].split for k in idx if records[k].split is not None)
        if preset:
            best = max(preset.values())
            assigned[g] = next(s for s in SPLITS if preset.get(s) == best)
            for k in idx:
                current[records[k].split or assigned[g]][records[k].label] += 1
        else:
            name = min(relative_name(records[k], root) for k in idx)
            key = hashlib.sha256(f"{seed}\0{name}".encode()).hexdigest()
            free.append((-len(idx), key, g))
    return assigned, free


def _deal_free_groups(
    records: Sequence[Record],
    members: dict[int, list[int]],
    free: list[tuple[int, str, int]],
    candidates: list[str],
    target: dict[str, dict[str, float]],
    current: dict[str, dict[str, float]],
) -> dict[int, str]:
    """Deal the groups without a preset split, keeping every split's label mix near its target.

    Largest groups first (they are the hardest to place), then a seeded shuffle; each goes to
    the split whose labels are furthest below target, relative to the target.

    Args:
        records: The photos.
        members: Record indices per group.
        free: The groups to deal, as :func:`_place_preset_groups` keys them.
        candidates: Splits with a non-zero share, in tie-break order (val, test, train).
        target: Photos wanted per split and label.
        current: Photos per split and label so far; each dealt group's photos are added.

    Returns:
        The split of every group in ``free``.
    """
    assigned: dict[int, str] = {}
    for _, _, g in sorted(free):
        counts = Counter(records[k].label for k in members[g])

        def score(s: str, counts: Counter[str] = counts) -> float:
            return sum(
                n * (target[s][lab] - current[s][lab]) / max(target[s][lab], 1.0) for lab, n in counts.items()
            )

        choice = max(candidates, key=score)  # ties go to the first: val, test, train
        assigned[g] = choice
        for lab, n in counts.items():
            current[choice][lab] += n
    return assigned


def split_records(
    records: Sequence[Record],
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    threshold: int = DUPLICATE_THRESHOLD,
    duplicate_pairs: Sequence[tuple[int, int]] | None = None,
    groups: np.ndarray | None = None,
) -> list[Record]:
    """Assign ``train``/``val``/``test`` to every record, leak-free and stratified by label.

    Deterministic: the result depends on the records' relative file names, labels, item ids and
    existing splits, and on ``seed``; not on their order or where the dataset lives.

    Args:
        records: The photos (e.g. from :func:`training.data.manifest.load_manifest`).
        val_fraction: Share of each label for validation.
        test_fraction: Share of each label for test (0 for none).
        seed: Varies which groups go where.
        threshold: Near-duplicate distance in bits for photos without ``item_id``.
        duplicate_pairs: Known near-duplicate index pairs (skips hashing), see :func:`group_records`.
        groups: :func:`group_records` of these records, when the caller already has it (skips
            hashing and reading the files again; ``threshold`` and ``duplicate_pairs`` unused).

    Returns:
        New records in the input order with ``split`` set. A record that already has a split
        keeps it, and the rest of its group follows it (the most common split when its members
        disagree, which ``authlens data validate`` reports as a leak).

    Raises:
        ValueError: fractions outside [0, 1) or summing to 1 or more.
    """
    _check_fractions(val_fraction, test_fraction)
    if not records:
        return []
    if groups is None:
        groups = group_records(records, threshold=threshold, duplicate_pairs=duplicate_pairs)
    members: dict[int, list[int]] = {}
    for k, g in enumerate(groups):
        members.setdefault(int(g), []).append(k)

    fractions = {"train": 1.0 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction}
    totals = Counter(r.label for r in records)
    target = {s: {label: fractions[s] * totals[label] for label in LABELS} for s in SPLITS}
    current = {s: dict.fromkeys(LABELS, 0.0) for s in SPLITS}
    assigned, free = _place_preset_groups(records, members, current, seed)
    candidates = [s for s in ("val", "test", "train") if fractions[s] > 0]
    assigned |= _deal_free_groups(records, members, free, candidates, target, current)
    return [
        r if r.split is not None else replace(r, split=assigned[int(groups[k])])
        for k, r in enumerate(records)
    ]


def split_counts(records: Sequence[Record]) -> dict[str, dict[str, int]]:
    """``{split: {label: photos}}`` with ``unsplit`` for records without a split."""
    out: dict[str, dict[str, int]] = {}
    for r in records:
        row = out.setdefault(r.split or "unsplit", dict.fromkeys(LABELS, 0))
        row[r.label] = row.get(r.label, 0) + 1
    return out
