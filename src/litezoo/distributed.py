"""Multi-process data-parallel plumbing: set up from torchrun's environment, reduce numbers across processes.

``torchrun --nproc_per_node N -m litezoo train …`` starts N copies of the CLI with RANK, WORLD_SIZE, LOCAL_RANK
and MASTER_ADDR/PORT set. Every helper here is a no-op in a plain single process, so the training code has no
``if distributed`` branches beyond wrapping the model.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from litezoo.errors import InputError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: single process

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and prints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_world_size() -> int:
    """WORLD_SIZE set by torchrun (1 when started normally)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise InputError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") from None


def under_launcher() -> bool:
    """Whether a launcher started this process as one of a job's workers (torchrun sets TORCHELASTIC_RUN_ID,
    also with --nproc-per-node 1; other launchers set WORLD_SIZE > 1). A launcher signals its workers itself, so
    a worker may receive the same stop signal more than once (litezoo.interrupt)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or launched_world_size() > 1


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun prepared: gloo on CPU, nccl on CUDA (one GPU per process).

    Returns the process info and the device this process should use (``cuda:LOCAL_RANK`` on GPUs).
    """
    world_size = launched_world_size()
    if world_size <= 1:
        return DistInfo(), device
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise InputError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) visible")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise InputError(f"data-parallel training supports cpu (gloo) and cuda (nccl), not {device.type}")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, backend=backend), device


def shutdown(clean: bool = False) -> None:
    """Close the process group. After a run that ended normally (``clean``), every process first waits for the
    others, so none tears the group down while another still talks to it: rank 0 hosts the rendezvous store, and
    a worker whose store connection vanished mid-teardown was seen to abort ("terminate called without an active
    exception", SIGABRT) after a finished run. After an error no barrier: another process may be gone."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if clean and dist.get_world_size() > 1:
        try:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=datetime.timedelta(seconds=120))
            else:
                dist.barrier()
        except Exception:  # noqa: BLE001 - best effort: a process that is gone must not turn success into an error
            pass
    dist.destroy_process_group()


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait until every process gets here (nothing in a single process)."""
    if is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over processes (in place) and return it; unchanged in a single process."""
    if is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    if is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj from rank 0, obj from rank 1, …]`` (``[obj]`` in a single process)."""
    if not is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every process."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_buffers(model: nn.Module, src: int = 0) -> None:
    """Give every process rank ``src``'s buffers (BN running statistics).

    DDP broadcasts buffers at the start of each forward, but each process then updates its own copy with its
    own half batch: before evaluating, all processes must hold the statistics the checkpoint will hold.
    """
    if is_initialized():
        for buf in model.buffers():
            dist.broadcast(buf, src=src)


def wrap_ddp(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` when running under torchrun; the model itself otherwise."""
    if not info.enabled:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DistributedDataParallel / DataParallel / torch.compile wrappers (its state_dict
    has no ``module.`` or ``_orig_mod.`` prefix): the one unwrapping helper (EMA and lookahead use it too)."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model
