"""Process set-up: the torchrun process group, threads per process, seeds, the network a config asks for.

Several processes share the machine's cores (:func:`threads_for`) and run the same steps on
different shards of each batch; rank 0 (:attr:`Dist.main`) is the one that writes files.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from model.flags import FLAG_NAMES
from model.network import AuthLensNet, NetworkSpec
from training.config import TrainConfig


@dataclass(frozen=True)
class Dist:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the process that writes files, logs and tracks."""
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the torchrun process group (gloo) when launched by torchrun; otherwise run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return Dist(rank=dist.get_rank(), world=dist.get_world_size())


def finish_distributed(d: Dist) -> None:
    """Wait for every rank to finish training, then leave the process group (no-op when alone)."""
    if d.world > 1:
        dist.barrier()
        dist.destroy_process_group()


def threads_for(cfg: TrainConfig, d: Dist) -> int:
    """Torch threads per process: ``train.threads``, or this machine's cores shared by its ranks.

    On several nodes each machine runs ``LOCAL_WORLD_SIZE`` of the ``world`` processes (torchrun sets it).
    """
    if cfg.train.threads:
        return cfg.train.threads
    local = int(os.environ.get("LOCAL_WORLD_SIZE", d.world))
    return max(1, (os.cpu_count() or 1) // max(1, local))


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def network_spec(cfg: TrainConfig) -> NetworkSpec:
    """The architecture a config asks for."""
    return NetworkSpec(
        backbone=cfg.model.backbone,
        pretrained=cfg.model.pretrained,
        num_flags=len(FLAG_NAMES),
        drop_rate=cfg.model.drop_rate,
        pool=cfg.model.pool,
        pool_r=cfg.model.pool_r,
        freeze=tuple(cfg.model.freeze),
        ood_features=cfg.model.ood_features,
    )


def build_network(cfg: TrainConfig) -> AuthLensNet:
    """The network of :func:`network_spec`, in ``channels_last`` memory format when configured.

    Raises:
        WeightsError: the pretrained weights are missing (they load here, before any training).
    """
    net = AuthLensNet(network_spec(cfg))
    if cfg.train.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net
