"""The training loop: optimiser, schedule, AMP, clipping, per-epoch checkpoints, resume, DDP.

Files written to the output folder:

- ``last.pt``: a cloudfree checkpoint (``cloudfree.inference.checkpoint``) after every epoch;
- ``train_state.pt``: optimiser, gradient-scaler, epoch and step (tensors and plain containers
  only, so it loads with ``weights_only=True``); ``resume`` continues from both;
- ``log.csv``: one row per epoch: epoch, step, lr, loss, each loss term, seconds.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the network is wrapped in DistributedDataParallel (nccl on
GPU, gloo on CPU), each process sees its own shard of every epoch and only rank 0 writes files.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.core.paths import check_folder_output, new_folder
from cloudfree.core.progress import progress
from cloudfree.core.threads import usable_cores
from cloudfree.inference.checkpoint import (
    LoadedModel,
    default_scaling,
    load_checkpoint,
    read_torch_file,
    save_checkpoint,
)
from cloudfree.inference.engines import resolve_device
from cloudfree.inference.scaling import Scaling
from cloudfree.networks import CloudRemovalNet, build, get_architecture
from cloudfree.networks.registry import preset_config
from cloudfree.output.atomic import atomic_output
from cloudfree.training.datasets import TripletDataset, find_samples
from cloudfree.training.losses import LOSSES

log = logging.getLogger("cloudfree")

CHECKPOINT = "last.pt"
STATE = "train_state.pt"
LOG = "log.csv"
SCHEDULES = ("cosine", "step", "exponential", "constant")
#: Largest learning rate taken: an Adam step moves each weight by about the rate, and the
#: networks' weights are of order 1 or less.
MAX_LR = 1.0


@dataclass
class TrainConfig:
    """Everything a run needs besides its data; recorded in the checkpoint metadata."""

    arch: str = "dsen2cr"
    preset: str = "small"
    overrides: dict = field(default_factory=dict)
    loss: str | None = None  # None: the architecture's ``default_loss``
    epochs: int = 10
    batch_size: int = 4
    crop: int | None = 128
    lr: float = 1e-4
    weight_decay: float = 0.0  # > 0 selects AdamW
    schedule: str = "cosine"
    decay: float = 0.8  # per-epoch factor of the exponential schedule
    clip: float = 1.0  # gradient-norm clip; 0 disables
    amp: bool = False
    device: str = "auto"
    seed: int = 0
    workers: int | None = None  # None: ``loader_workers`` picks
    quiet: bool = False

    def __post_init__(self) -> None:
        network = get_architecture(self.arch)
        if self.loss is None:
            self.loss = network.default_loss
        if network.requires_default_loss and self.loss != network.default_loss:
            raise UsageError(f"{self.arch} trains only with the {network.default_loss} loss (its "
                             f"terms train parts that the {self.loss} loss would leave "
                             "untrained); leave the loss unset")
        if self.loss not in LOSSES:
            raise UsageError(f"unknown loss {self.loss!r} (known: {', '.join(LOSSES)})")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule {self.schedule!r} (known: {', '.join(SCHEDULES)})")
        if not 0 < self.decay <= 1:
            raise UsageError(f"decay must be in (0, 1], got {self.decay}")
        if not 0 < self.lr <= MAX_LR:  # one epoch at 1e30 saved weights of 1e30, finite
            raise UsageError(f"lr={self.lr:g} must be above 0 and at most {MAX_LR:g}: Adam moves "
                             "every weight by about the learning rate each step (the papers "
                             "train at 1e-4 to 1e-3)", "lr")


def learning_rate(config: TrainConfig, step: int, total: int, steps_per_epoch: int) -> float:
    """cosine: 5 % linear warm-up then cosine to 1 % of the base rate; step: GLF-CR's halving
    every 5 epochs; exponential: times ``decay`` every epoch (seed 003); constant."""
    if config.schedule == "step":
        return config.lr * 0.5 ** (step // (5 * steps_per_epoch))
    if config.schedule == "exponential":
        return config.lr * config.decay ** (step // steps_per_epoch)
    if config.schedule == "constant":
        return config.lr
    warm = max(1, total // 20)
    if step < warm:
        return config.lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return config.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _device(name: str, rank_local: int) -> torch.device:
    """The device as ``remove`` resolves and checks it; under torchrun, this rank's GPU."""
    name = resolve_device(name)
    if name == "cuda" and dist.is_initialized():
        name = resolve_device(f"cuda:{rank_local}")
    return torch.device(name)


def check_amp(amp: bool, device: str) -> None:
    """Refuse mixed precision on a device that cannot run it, as ``remove`` refuses fp16."""
    if amp and not device.startswith("cuda"):
        raise UsageError(f"amp=True (mixed precision) needs a GPU, and the device is {device}; "
                         "drop amp=True to train in fp32", "amp")


def loader_workers(workers: int | None, device: torch.device) -> int:
    """Data-loading processes: as given up to one per usable core, else 0 on CPU (the network
    needs the cores) and on a GPU up to 8, one per core (with none, GLF-CR small on an H100
    trained 4.1x slower, 13 against 54 samples/s at 128 px, batch 16, AMP)."""
    cores = usable_cores()
    if workers is not None and workers > cores:  # each would compete for the same cores
        log.warning("%d data-loading processes asked for, more than the %d usable cores; "
                    "using %d", workers, cores, cores)
        return cores
    if workers is not None:
        return workers
    return 0 if device.type == "cpu" else min(8, cores)


def _init_distributed(device: str) -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        gpu = device != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if gpu else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def prepare(config: TrainConfig, out: Path, resume: bool, overwrite: bool = False,
            last: LoadedModel | None = None) -> tuple[CloudRemovalNet, Scaling, dict | None]:
    """The network, its scaling and the saved training state (None for a fresh run).

    A fresh run refuses a folder that holds another run unless ``overwrite`` (which also drops
    that run's log). ``last``: the run's checkpoint where the caller has read it already
    (``run_checkpoint``), so that resuming reads it once.
    """
    out = check_folder_output(out, "train")
    if resume and overwrite:
        raise UsageError("resume=True continues the run in the folder and overwrite=True starts "
                         "it over: pick one", "resume", "overwrite")
    if not resume:
        existing = [name for name in (CHECKPOINT, STATE) if (out / name).exists()]
        if existing and not overwrite:
            raise UsageError(f"{out} already holds a training run ({', '.join(existing)}): pass "
                             "resume=True to continue it or overwrite=True to start over",
                             "resume", "overwrite")
        if overwrite:
            (out / LOG).unlink(missing_ok=True)
        network = build(config.arch, config.preset, **config.overrides)
        if not any(p.requires_grad for p in network.parameters()):
            raise UsageError(f"{config.arch} has no weights to train: it is a fixed method, run "
                             "as it is; choose a network (arch=NAME)", "arch")
        return network, default_scaling(config.arch), None
    if not (out / CHECKPOINT).is_file() or not (out / STATE).is_file():
        raise UsageError(f"resume=True: no {CHECKPOINT} and {STATE} in {out}", "resume")
    loaded = last if last is not None else load_checkpoint(out / CHECKPOINT)
    arch, preset = network_of(loaded)
    for name, theirs, ours in (("arch", arch, config.arch), ("preset", preset, config.preset)):
        if theirs is not None and theirs != ours:
            of_preset = f" (preset {preset})" if preset else ""
            raise UsageError(f"{out} holds a {arch} run{of_preset}, which {name}={ours} cannot "
                             f"continue: resume it with {name}={theirs}, or start the new run "
                             "in another folder", name)
    state = load_state_file(out / STATE)
    done = state["epoch"]
    if done > config.epochs:  # an epoch count the run started with, not repeated
        raise UsageError(f"{out} has trained {done} epochs, more than epochs={config.epochs} in "
                         "all: give the epochs the run started with (more than "
                         f"{done} to train on)", "epochs")
    if done == config.epochs:
        log.warning("%s has trained its %d epochs: nothing to continue (ask for more epochs "
                    "to train on)", out, done)
    return loaded.network, loaded.scaling, state


def run_checkpoint(out: Path) -> LoadedModel | None:
    """The checkpoint of the run that ``out`` holds, which resuming it continues; None when
    ``out`` holds none."""
    path = Path(out) / CHECKPOINT
    return load_checkpoint(path) if path.is_file() else None


def network_of(loaded: LoadedModel) -> tuple[str, str | None]:
    """The checkpoint's architecture and the preset its configuration is (None when it is none
    of the presets): the one its training recorded first, else the first that fits."""
    recorded = loaded.metadata.get("training") or {}
    if recorded.get("arch") != loaded.arch:  # not trained by cloudfree train
        recorded = {}
    overrides = recorded.get("overrides") or {}
    presets = get_architecture(loaded.arch).presets
    names = [recorded.get("preset"), *presets]
    return loaded.arch, next((p for p in names if p in presets and
                              preset_config(loaded.arch, p, **overrides) == loaded.config), None)


def load_state_file(path: Path) -> dict:
    """The saved training state, checked for what resuming needs."""
    state = read_torch_file(path, "cpu", what="training state")
    if not isinstance(state, dict) or not {"epoch", "step", "optimizer"} <= set(state):
        raise CloudfreeError(f"training state {path} lacks epoch, step or optimizer: not a "
                             f"{STATE} written by cloudfree train")
    return state


def _batch_loss(network, batch: dict, loss_fn, scaling: Scaling, progress_done: float):
    if getattr(network, "module", network).uses_mask:  # on top of the classical fill
        pred, aux = network(batch["filled"], batch["s1"], batch["cloud"], return_aux=True)
    else:
        pred, aux = network(batch["s2"], batch["s1"], return_aux=True)
    f = scaling.s2_factor
    on_reflectance = {**batch, "s2": batch["s2"] / f, "target": batch["target"] / f}
    return loss_fn(pred.float() / f, on_reflectance, aux, progress_done)


def _own_errors(loader: DataLoader) -> Iterator[dict]:
    """The loader's batches; an error of cloudfree's in a loading process is raised with its
    own one-line message (the DataLoader puts the process's traceback into it)."""
    try:
        yield from loader
    except CloudfreeError as exc:
        text = str(exc).strip()
        if "\nOriginal Traceback" not in text:
            raise
        raise type(exc)(text.splitlines()[-1].partition(": ")[2]) from None


def _write_log(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def train(network: CloudRemovalNet, scaling: Scaling, dataset: Dataset, config: TrainConfig,
          out: Path, state: dict | None = None, metadata: dict | None = None) -> dict:
    """Train for ``config.epochs`` epochs in all (a resumed run continues); returns a summary."""
    rank, world = _init_distributed(config.device)
    with new_folder(out, "train") if rank == 0 else nullcontext(Path(out)) as out:
        return _train(network, scaling, dataset, config, out, state, metadata, rank, world)


def _train(network: CloudRemovalNet, scaling: Scaling, dataset: Dataset, config: TrainConfig,
           out: Path, state: dict | None, metadata: dict | None, rank: int, world: int) -> dict:
    device = _device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
    check_amp(config.amp, device.type)
    amp = config.amp
    torch.manual_seed(config.seed + rank + (state["step"] if state else 0))
    network.to(device).train()
    model = torch.nn.parallel.DistributedDataParallel(network) if world > 1 else network
    params = [p for p in network.parameters() if p.requires_grad]
    opt = (torch.optim.AdamW(params, config.lr, weight_decay=config.weight_decay)
           if config.weight_decay > 0 else torch.optim.Adam(params, config.lr))
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    if state:
        try:
            opt.load_state_dict(state["optimizer"])
            if state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
        except (KeyError, ValueError, TypeError) as exc:
            raise CloudfreeError(f"training state in {out} does not fit this network and "
                                 f"optimiser: {exc}") from None
    sampler = (DistributedSampler(dataset, world, rank, seed=config.seed) if world > 1
               else RandomSampler(dataset, generator=torch.Generator().manual_seed(config.seed)))
    workers = loader_workers(config.workers, device)
    loader = DataLoader(dataset, config.batch_size, sampler=sampler,
                        drop_last=len(dataset) >= config.batch_size * world,
                        num_workers=workers, persistent_workers=workers > 0,
                        pin_memory=device.type == "cuda")
    per_epoch = max(1, len(loader))
    total = per_epoch * config.epochs
    step, first = (state["step"], state["epoch"]) if state else (0, 0)
    loss_fn = LOSSES[config.loss]
    for epoch in range(first, config.epochs):
        if world > 1:
            sampler.set_epoch(epoch)
        started, sums, count = time.time(), {}, 0
        bar = progress(_own_errors(loader), total=per_epoch,
                       desc=f"epoch {epoch + 1}/{config.epochs}", quiet=config.quiet or rank > 0,
                       unit="batch")
        for batch in bar:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            lr = learning_rate(config, step, total, per_epoch)
            for group in opt.param_groups:
                group["lr"] = lr
            with torch.autocast(device.type, torch.float16, enabled=amp):
                loss, parts = _batch_loss(model, batch, loss_fn, scaling, step / total)
            if not amp and not torch.isfinite(loss.detach()).all():  # AMP skips such steps
                raise CloudfreeError(
                    f"training diverged at step {step + 1} (epoch {epoch + 1}): the loss is "
                    f"{loss.item()}; nothing of this epoch is saved; lower lr={config.lr:g} or "
                    "look for NaN in the data", "lr")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, config.clip)
            scaler.step(opt)
            scaler.update()
            step, count = step + 1, count + 1
            for k, v in {"loss": loss.item(), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{sums['loss'] / count:.4g}")
        means = _all_mean({k: v / max(count, 1) for k, v in sums.items()}, world, device)
        row = {"epoch": epoch + 1, "step": step, "lr": lr, **means,
               "seconds": round(time.time() - started, 2)}
        if not all(torch.isfinite(p.detach()).all() for p in params):  # the last step diverged
            raise CloudfreeError(
                f"training diverged at step {step} (epoch {epoch + 1}): the parameters are no "
                f"longer finite; nothing of this epoch is saved; lower lr={config.lr:g} or "
                "look for NaN in the data", "lr")
        if rank == 0:
            _save(out, network, scaling, opt, scaler, epoch + 1, step, config, metadata)
            _write_log(out / LOG, row)
            log.info("epoch %d/%d: loss %.4g (%d steps)", epoch + 1, config.epochs,
                     means["loss"], step)
        if world > 1:
            dist.barrier()
    return {"epochs": config.epochs, "step": step, "checkpoint": str(out / CHECKPOINT),
            "log": str(out / LOG)}


def train_folder(data: Path, config: TrainConfig, out: Path, resume: bool = False,
                 overwrite: bool = False, last: LoadedModel | None = None) -> dict:
    """Train on the triplets found under ``data`` (see ``cloudfree.training.datasets``);
    ``last``: the run's checkpoint, where already read (``prepare``)."""
    check_amp(config.amp, resolve_device(config.device))
    network, scaling, state = prepare(config, out, resume, overwrite, last)
    samples = find_samples(data)
    dataset = TripletDataset(samples, scaling, config.crop, network.size_multiple)
    log.info("training %s (%s) on %d samples from %s", network.arch, config.preset, len(samples),
             data)
    return train(network, scaling, dataset, config, out, state,
                 metadata={"data": str(data), "samples": len(samples)})


def _all_mean(values: dict[str, float], world: int, device: torch.device) -> dict[str, float]:
    """Average per-process epoch means over the processes of a distributed run."""
    if world == 1:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(values, (t / world).tolist(), strict=True))


def _save(out: Path, network: CloudRemovalNet, scaling: Scaling, opt, scaler, epoch: int,
          step: int, config: TrainConfig, metadata: dict | None) -> None:
    """Checkpoint and training state of the finished epoch."""
    meta = {**(metadata or {}), "training": {**asdict(config), "epoch": epoch, "step": step}}
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / CHECKPOINT, network, scaling, metadata=meta)
    with atomic_output(out / STATE, overwrite=True) as tmp:
        torch.save({"epoch": epoch, "step": step, "optimizer": opt.state_dict(),
                    "scaler": scaler.state_dict()}, tmp)
