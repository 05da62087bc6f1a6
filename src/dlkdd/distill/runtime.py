"""Where and how training runs: device, distributed process group, mixed precision, seeds and RNG states.

Everything CUDA-specific (NCCL, autocast, GradScaler, channels_last_3d) is guarded by ``torch.cuda.is_available()``;
on CPU the same code runs in float32 with gloo.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class Runtime:
    """The process's place in a (possibly single-process) job."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_runtime() -> Runtime:
    """Join the torchrun process group when launched by ``torchrun`` (WORLD_SIZE > 1), else a single process.

    NCCL and one GPU per local rank on CUDA; gloo on CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world <= 1:
        return Runtime(0, 1, torch.device("cuda" if cuda else "cpu"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Runtime(dist.get_rank(), dist.get_world_size(), torch.device(f"cuda:{local}" if cuda else "cpu"))


def shutdown(rt: Runtime) -> None:
    if rt.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], rt: Runtime) -> list[float]:
    """Sum a few scalars over ranks (a no-op in one process)."""
    if not rt.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=rt.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def amp_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``train.amp`` on ``device``; None = full precision (always on CPU)."""
    if device.type != "cuda" or name == "off":
        return None
    return torch.bfloat16 if name == "bf16" else torch.float16


def seed_everything(seed: int, threads: int, deterministic: bool = True) -> torch.Generator:
    """Seed python, numpy and torch, fix the thread count, pick deterministic kernels; returns the shuffling
    generator."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, threads))
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for determinism on CUDA
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    return torch.Generator().manual_seed(seed)


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random stream a training epoch draws from, as tensors and primitives (loadable with weights_only)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "generator": generator.get_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                       "gauss": float(gauss)},
             "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
