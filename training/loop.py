"""The training loop: `docs/architecture.md` §6, resumable, on one process or under ``torchrun``.

One optimiser step = ``accumulate`` batches per process; DDP averages gradients across processes,
so the global batch is ``batch_size × accumulate × world``. Each step clips the total gradient norm
and skips the update when the loss or the norm is not finite. The cosine schedule steps per epoch
(2DPASS) or per step; a step budget (``max_steps``: the argument, else ``loop.max_steps``) ends the
run, sets the progress bar's total and, per step, the schedule's period (`schedule_period`), and
the run still ends validated, with ``best.pt`` and ``last.pt``. A resumed run keeps the period
it started with. ``last.pt`` is written every ``checkpoint_every`` steps, at each validation
and at the end, ``best.pt`` when validation mIoU improves; both atomically, so a kill at any moment leaves the
previous complete file. ``--resume`` restores the model, optimiser, scheduler, step, position in
the epoch and RNG states, and the sampler skips the batches already done. With ``loop.ema_decay``
an exponential moving average of the weights is kept beside them: it is what validation scores and
what checkpoints hold as their weights (so evaluation and export read the average), while
``last.pt`` also keeps the raw weights the optimiser continues from. ``train_log.jsonl``
gets one line per optimiser step (step, epoch, loss, gradient norm, learning rate); with
``loop.term_grad_norms_every`` every N-th line also has ``grad3d/<term>``, the norm of each weighted
loss term's gradient with respect to the 3D encoder (`TrainingModel.encoder_grad_norms`), measured
on the main process's last micro-batch of the step, before the update.

Sparse convolutions run on the backend `training.backend.choose_backend` picks (``loop.backend`` or
``--backend``; auto: spconv on CUDA when a CUDA build imports, else the table backend over present
taps), reported on stderr and recorded in checkpoints. Under ``torchrun`` every process validates a
disjoint shard of the validation set and the confusion matrices are summed, so each gets the same
mIoU (`training.evaluation.evaluate_sharded`); the process group times out after
``loop.dist_timeout_minutes``.

Structure: `_setup` builds a `_Run` (data sets, model, optimiser, scheduler, sampler, writers,
restored `TrainState`); `_train_epoch` feeds the batches of an epoch, `_step` makes each optimiser
step, `_log` reports it, and `_validate_and_checkpoint` ends each epoch (or the step budget).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm import tqdm

from seg3d.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from seg3d.io import remove_stale_temporaries, write_atomic
from seg3d.preprocess.device import move_to
from training.backend import BackendChoice, TrainBackend, choose_backend, needs_grad_scaler
from training.config import TrainConfig
from training.data.batch import collate
from training.datasets import TrainingSet, build_class_weights, build_dataset
from training.distributed import Distributed, all_mean, setup_distributed
from training.evaluation import evaluate_sharded
from training.model import TrainingModel, build_training_model
from training.sampler import EpochSampler

__all__ = ["TrainResult", "schedule_period", "train"]

LAST, BEST = "last.pt", "best.pt"


@dataclass
class TrainState:
    """Where the run is; saved in every checkpoint."""

    step: int = 0  # optimiser steps done
    epoch: int = 0  # current epoch
    batch_in_epoch: int = 0  # batches of `epoch` already consumed (per process)
    best_miou: float = -1.0
    skipped_steps: int = 0
    train_seconds: float = 0.0  # wall time of training steps (data loading included), over resumes
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class TrainResult:
    steps: int
    epochs_done: int
    last_loss: float
    best_miou: float
    skipped_steps: int
    out: Path


def _unwrap(model: nn.Module) -> TrainingModel:
    return model.module if isinstance(model, DistributedDataParallel) else model  # type: ignore[return-value]


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save(
    path: Path,
    config: TrainConfig,
    model: TrainingModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: TrainState,
    scaler: torch.amp.GradScaler,
    backend: BackendChoice,
    ema: AveragedModel | None,
) -> None:
    training: dict[str, Any] = {}
    if ema is not None:  # the checkpoint's weights are the average; the optimiser's go beside them
        training["raw_state_dict"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_checkpoint(
        path,
        Checkpoint(
            mode=config.branch.mode,
            model_config=config.model,
            state_dict=model.state_dict() if ema is None else _averaged(ema).state_dict(),
            training=training
            | {
                "config": config.model_dump(mode="json"),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "grad_scaler": scaler.state_dict(),  # {} when no scaler runs
                "backend": {"backend": backend.backend, "present_taps": backend.present_taps},
                "state": {
                    "step": state.step,
                    "epoch": state.epoch,
                    "batch_in_epoch": state.batch_in_epoch,
                    "best_miou": state.best_miou,
                    "skipped_steps": state.skipped_steps,
                    "train_seconds": state.train_seconds,
                    "history": state.history,
                },
                "rng": _rng_state(),
            },
        ),
    )


def _averaged(ema: AveragedModel) -> TrainingModel:
    return ema.module  # type: ignore[return-value]


def _new_ema(model: TrainingModel, decay: float | None) -> AveragedModel | None:
    if decay is None:
        return None
    # use_buffers: BatchNorm's running statistics are averaged like the weights, so the average
    # is a consistent model without a pass to re-estimate them.
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _resume(
    path: Path,
    config: TrainConfig,
    model: TrainingModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    ema: AveragedModel | None,
) -> TrainState:
    checkpoint = load_checkpoint(path)
    stored = TrainConfig.model_validate(checkpoint.training["config"])
    if stored.model != config.model or stored.branch != config.branch:
        raise ValueError(
            f"{path} was trained with another model or mode ({stored.name}: {stored.model.name}, "
            f"mode {stored.branch.mode}); resume with that config or train into a new --out"
        )
    raw = checkpoint.training.get("raw_state_dict")
    if (ema is None) != (raw is None):
        raise ValueError(
            f"{path} was trained {'without' if raw is None else 'with'} loop.ema_decay; resume with the "
            "same setting or train into a new --out"
        )
    if ema is None:
        model.load_state_dict(checkpoint.state_dict)
    else:
        model.load_state_dict(raw)
        _averaged(ema).load_state_dict(checkpoint.state_dict)
        # Counts the updates; any count past zero means "average from here on" to AveragedModel.
        ema.n_averaged.fill_(checkpoint.training["state"]["step"])
    optimizer.load_state_dict(checkpoint.training["optimizer"])
    scheduler.load_state_dict(checkpoint.training["scheduler"])
    scaler_state = checkpoint.training.get("grad_scaler") or {}
    if scaler.is_enabled() and scaler_state:  # a run resumed on another backend starts a new scale
        scaler.load_state_dict(scaler_state)
    _set_rng_state(checkpoint.training["rng"])
    return TrainState(**checkpoint.training["state"])


def _writer(out: Path, env: Distributed) -> Any:
    if not env.is_main:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is in the `train` extra; the loop works without it
        return None
    return SummaryWriter(str(out / "tensorboard"))


def train(
    config: TrainConfig,
    data_root: str | Path,
    out: str | Path,
    max_steps: int | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
    backend: TrainBackend | None = None,
) -> TrainResult:
    """Train ``config`` on ``data_root`` into ``out`` (see the module docstring). ``max_steps`` and
    ``backend`` override the config's ``loop.max_steps`` and ``loop.backend``.

    Raises:
        FileExistsError: ``out`` already holds a run and ``resume`` is False.
        FileNotFoundError: ``resume`` without a ``last.pt``; a data root that is not a data set.
        ValueError: resuming a checkpoint of another model or mode; backend ``spconv`` where it
            cannot train (`training.backend.choose_backend`).
    """
    out = Path(out)
    overrides: dict[str, Any] = {}
    if max_steps is not None:  # recorded in the run's config.yaml and checkpoints
        overrides["max_steps"] = max_steps
    if backend is not None:
        overrides["backend"] = backend
    if overrides:
        config = config.model_copy(update={"loop": config.loop.model_copy(update=overrides)})
    env = setup_distributed(device, timeout_minutes=config.loop.dist_timeout_minutes)
    try:
        return _train(_setup(config, Path(data_root), out, resume, env, progress, on_step))
    finally:
        env.close()


@dataclass
class _Run:
    """Everything one training run holds between its setup and its end."""

    config: TrainConfig
    out: Path
    env: Distributed
    model: TrainingModel
    wrapped: nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: Any
    train_set: TrainingSet
    val_set: TrainingSet  # on every process: each validates its shard
    sampler: EpochSampler
    loader_kwargs: dict[str, Any]
    steps_per_epoch: int
    total_steps: int
    autocast: Callable[[], contextlib.AbstractContextManager[Any]]
    backend: BackendChoice
    scaler: torch.amp.GradScaler  # disabled unless spconv runs float16 under autocast
    writer: Any  # a tensorboard SummaryWriter on the main process, or None
    log: TextIO | None  # train_log.jsonl on the main process
    bar: tqdm
    state: TrainState
    on_step: Callable[[int, float], None] | None
    ema: AveragedModel | None  # the weights' moving average (loop.ema_decay), or None
    last_loss: float = float("nan")

    @property
    def scored(self) -> TrainingModel:
        """The model validation scores and checkpoints hold: the average when there is one."""
        return self.model if self.ema is None else _averaged(self.ema)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
        if self.log is not None:
            self.log.close()


@dataclass
class _Epoch:
    """Progress within the current epoch: micro-batch losses of the step under way, and timing."""

    started: float
    tick: float
    micro: list[float] = field(default_factory=list)
    samples: int = 0


@dataclass(frozen=True)
class _Step:
    """What one optimiser step measured."""

    loss: float
    norm: float
    rate: float  # training samples per second over the epoch so far, all processes
    terms: dict[str, Any]
    grad3d: dict[str, float]  # per-term gradient norms into the 3D encoder; empty unless measured


def _train(run: _Run) -> TrainResult:
    """Epochs until the epoch or step budget ends, validating and checkpointing on schedule."""
    state = run.state
    try:
        while state.epoch < run.config.loop.epochs and state.step < run.total_steps:
            epoch_done = _train_epoch(run)
            _validate_and_checkpoint(run, epoch_done)
            run.env.barrier()
    finally:
        run.close()
    return TrainResult(state.step, state.epoch, run.last_loss, state.best_miou, state.skipped_steps, run.out)


def _setup(
    config: TrainConfig,
    data_root: Path,
    out: Path,
    resume: bool,
    env: Distributed,
    progress: bool,
    on_step: Callable[[int, float], None] | None,
) -> _Run:
    """Data sets, model, optimiser, schedule and the restored state; the run folder prepared."""
    if (out / LAST).exists() and not resume:
        raise FileExistsError(f"{out} already holds a run ({LAST}); pass --resume or choose another --out")
    if resume and not (out / LAST).exists():
        raise FileNotFoundError(f"--resume: no {LAST} in {out}")
    loop = config.loop
    torch.manual_seed(loop.seed)  # same initial weights on every process
    train_set = build_dataset(config, data_root, "train", training=True)
    val_set = build_dataset(config, data_root, config.data.val_split, training=False)
    sampler = EpochSampler(
        len(train_set), loop.batch_size, shuffle=True, seed=loop.seed, rank=env.rank, world=env.world
    )
    steps_per_epoch = len(sampler) // loop.accumulate
    if steps_per_epoch == 0:
        raise ValueError(
            f"{len(train_set)} training samples are too few for batch {loop.batch_size} × accumulate "
            f"{loop.accumulate} × {env.world} process(es)"
        )
    total_steps = int(min(steps_per_epoch * loop.epochs, loop.max_steps or math.inf))
    class_weights = build_class_weights(config, train_set)
    backend = choose_backend(loop.backend, env.device)
    model = build_training_model(config.model, config.branch, class_weights, backend.backend).to(env.device)
    # The table backend convolves over the present neighbour taps only: same values, about
    # present/27 of the dense gather's saved activations (`training.backend`), and on CPU a 2x
    # faster backward (it gathers instead of scattering into all 27 taps).
    model.encoder3d.present_taps = backend.present_taps
    if env.is_main:
        print(f"{backend.describe()}; device {env.device}", file=sys.stderr)
    scaler = torch.amp.GradScaler("cuda", enabled=needs_grad_scaler(backend, loop.amp, env.device))
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.optim.lr,
        momentum=config.optim.momentum,
        nesterov=config.optim.nesterov,
        weight_decay=config.optim.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer,
        T_max=schedule_period(config, steps_per_epoch, total_steps),
        eta_min=config.schedule.eta_min,
    )
    ema = _new_ema(model, loop.ema_decay)
    state = _resume(out / LAST, config, model, optimizer, scheduler, scaler, ema) if resume else TrainState()
    if env.is_main:
        _prepare_out(out, config, resume, state.step)
    log = (out / "train_log.jsonl").open("a") if env.is_main else None
    wrapped: nn.Module = (
        DistributedDataParallel(model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
        if env.world > 1
        else model
    )
    loader_kwargs: dict[str, Any] = {
        "batch_sampler": sampler,
        "collate_fn": partial(collate, config=config.model),
        "num_workers": config.data.num_workers,
        "persistent_workers": False,
    }
    writer = _writer(out, env)
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = (
        partial(torch.autocast, device_type="cuda", dtype=torch.bfloat16)
        if loop.amp and env.device.type == "cuda"
        else contextlib.nullcontext
    )
    bar = tqdm(total=total_steps, initial=state.step, disable=not (progress and env.is_main), unit="step")
    return _Run(
        config=config,
        out=out,
        env=env,
        model=model,
        wrapped=wrapped,
        optimizer=optimizer,
        scheduler=scheduler,
        train_set=train_set,
        val_set=val_set,
        sampler=sampler,
        loader_kwargs=loader_kwargs,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        autocast=autocast,
        backend=backend,
        scaler=scaler,
        writer=writer,
        log=log,
        bar=bar,
        state=state,
        on_step=on_step,
        ema=ema,
    )


def schedule_period(config: TrainConfig, steps_per_epoch: int, total_steps: int) -> int:
    """``T_max`` of the cosine schedule, in the schedule's unit.

    Per step, the config's period (`TrainConfig.t_max`) shortened to the run's steps, and stretched
    to a step budget (``loop.max_steps``, ``--max-steps``) that is longer: torch's
    ``CosineAnnealingLR`` is periodic, so a budget past the period would climb back to the base
    rate and end there (``--max-steps 1200`` on the demo's 600-step period did). Per epoch, the
    config's period (2DPASS: ``epochs − 4``, whose last epochs climb back, as upstream), shortened
    to the budget's whole epochs."""
    if config.schedule.unit == "step":
        if config.loop.max_steps is not None and total_steps > config.t_max:
            return total_steps
        return max(1, min(config.t_max, total_steps))
    return max(1, min(config.t_max, total_steps // steps_per_epoch))


def _prepare_out(out: Path, config: TrainConfig, resume: bool, step: int) -> None:
    """Write the config, drop the temporaries of a cut write, and the log lines of steps that will be
    redone: on resume those after the checkpoint, on a new run all of them (a run cut before its
    first checkpoint)."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "config.yaml", config.to_yaml())
    remove_stale_temporaries(out)  # writes cut by a kill; the complete files beside them are kept
    log_path = out / "train_log.jsonl"
    if not resume and log_path.exists():  # the lines of a run cut before its first checkpoint
        write_atomic(log_path, "")
    if resume and log_path.exists():  # steps logged after the checkpoint are redone: drop them
        kept = [line for line in log_path.read_text().splitlines() if json.loads(line)["step"] <= step]
        write_atomic(log_path, "".join(f"{line}\n" for line in kept))


def _train_epoch(run: _Run) -> bool:
    """Train the rest of the current epoch, or until the step budget ends; True when the epoch is done."""
    config, state, env = run.config, run.state, run.env
    loop = config.loop
    batches_per_epoch = run.steps_per_epoch * loop.accumulate
    run.train_set.set_epoch(state.epoch)
    run.sampler.set_epoch(state.epoch, skip=state.batch_in_epoch)
    run.model.train()
    now = time.perf_counter()
    epoch = _Epoch(started=now, tick=now)
    for batch in DataLoader(run.train_set, **run.loader_kwargs):
        if state.batch_in_epoch >= batches_per_epoch:
            break  # the incomplete last step of an epoch is dropped
        batch = move_to(batch, env.device)
        final = (state.batch_in_epoch + 1) % loop.accumulate == 0
        sync = contextlib.nullcontext() if final or env.world == 1 else run.wrapped.no_sync()  # type: ignore[operator]
        with sync, run.autocast():
            output = run.wrapped(batch)
            # Before the training backward, which frees the graph the per-term backwards need.
            grad3d = _term_grad_norms(run, output.graph_terms) if final else {}
            run.scaler.scale(output.loss / loop.accumulate).backward()
        epoch.micro.append(float(output.loss.detach()))
        epoch.samples += len(batch.names)
        state.batch_in_epoch += 1
        if not final:
            continue
        _log(run, _step(run, epoch, output.terms, grad3d))
        if env.is_main and state.step % loop.checkpoint_every == 0:
            _save_run(run, LAST)
        if state.step >= run.total_steps:
            break
    epoch_done = state.batch_in_epoch >= batches_per_epoch
    if epoch_done:
        state.epoch += 1
        state.batch_in_epoch = 0
        if config.schedule.unit == "epoch":
            run.scheduler.step()
    return epoch_done


def _term_grad_norms(run: _Run, terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per-term gradient norms into the 3D encoder on the steps ``loop.term_grad_norms_every``
    names (the step being made is ``state.step + 1``), on the main process, which alone logs them."""
    every = run.config.loop.term_grad_norms_every
    if every is None or (run.state.step + 1) % every != 0 or not run.env.is_main:
        return {}
    scale = float(run.scaler.get_scale()) if run.scaler.is_enabled() else 1.0
    return run.model.encoder_grad_norms(terms, scale)


def _step(run: _Run, epoch: _Epoch, terms: dict[str, Any], grad3d: dict[str, float]) -> _Step:
    """The optimiser step after the last micro-batch of an accumulation: average the loss over
    processes, clip, update unless the loss or norm is not finite, and advance the schedule."""
    state = run.state
    loss = all_mean(sum(epoch.micro) / len(epoch.micro), run.env)
    epoch.micro = []
    run.scaler.unscale_(run.optimizer)  # no-op unless a scaler runs; then the norm is the true one
    norm = _clip(run.model, run.config.optim.grad_clip)
    if math.isfinite(loss) and math.isfinite(norm):
        run.scaler.step(run.optimizer)  # optimizer.step() when no scaler runs
        if run.ema is not None:
            run.ema.update_parameters(run.model)
    else:
        state.skipped_steps += 1
    run.scaler.update()  # an overflow lowers the scale
    run.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    now = time.perf_counter()
    state.train_seconds += now - epoch.tick
    epoch.tick = now
    run.last_loss = loss
    if run.config.schedule.unit == "step":
        run.scheduler.step()
    elapsed = time.perf_counter() - epoch.started
    rate = epoch.samples * run.env.world / max(elapsed, 1e-9)
    return _Step(loss=loss, norm=norm, rate=rate, terms=terms, grad3d=grad3d)


def _log(run: _Run, step: _Step) -> None:
    """Report a step: progress bar, ``on_step``, a ``train_log.jsonl`` line, tensorboard scalars."""
    state = run.state
    lr = run.optimizer.param_groups[0]["lr"]
    run.bar.set_postfix(loss=f"{step.loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{step.rate:.2f}")
    run.bar.update(1)
    if run.on_step is not None:
        run.on_step(state.step, step.loss)
    if run.log is not None:
        record = {
            "step": state.step,
            "epoch": state.epoch,
            "loss": step.loss,
            "grad_norm": step.norm,
            "lr": lr,
            "skipped": state.skipped_steps,
            "train_s": round(state.train_seconds, 2),
        } | {f"grad3d/{name}": value for name, value in step.grad3d.items()}
        run.log.write(json.dumps(record) + "\n")
        run.log.flush()
    if run.writer is not None and state.step % run.config.loop.log_every == 0:
        run.writer.add_scalar("train/loss", step.loss, state.step)
        run.writer.add_scalar("train/lr", lr, state.step)
        run.writer.add_scalar("train/grad_norm", step.norm, state.step)
        run.writer.add_scalar("train/samples_per_s", step.rate, state.step)
        for name, value in step.terms.items():
            run.writer.add_scalar(f"loss/{name}", value, state.step)
    if run.writer is not None:  # measured on their own schedule: written whenever there are some
        for name, value in step.grad3d.items():
            run.writer.add_scalar(f"grad3d/{name}", value, state.step)


def _validate_and_checkpoint(run: _Run, epoch_done: bool) -> None:
    """Validate on schedule, and once more when the step budget ends the run mid-epoch, so best.pt
    always reflects the final weights too; then write last.pt (and best.pt on a better mIoU).

    Every process validates its shard and gets the summed result (`evaluate_sharded`), so they
    reach the next collective together and agree on the best mIoU; the main process writes."""
    config, state = run.config, run.state
    loop = config.loop
    validate = (epoch_done and (state.epoch % loop.val_every == 0 or state.epoch == loop.epochs)) or (
        state.step >= run.total_steps
    )
    if not validate:
        return
    if len(run.val_set) > 0:
        report = evaluate_sharded(
            run.scored.encoder3d, run.val_set, config.model, run.env, max_samples=loop.max_val_samples
        ).report(config.model.class_names)
        state.history.append({"epoch": state.epoch, "step": state.step, "miou": report.miou})
        if run.writer is not None:
            run.writer.add_scalar("val/miou", report.miou, state.step)
        if report.miou > state.best_miou:
            state.best_miou = report.miou
            if run.env.is_main:
                _save_run(run, BEST)
    if run.env.is_main:
        _save_run(run, LAST)


def _save_run(run: _Run, name: str) -> None:
    _save(
        run.out / name,
        run.config,
        run.model,
        run.optimizer,
        run.scheduler,
        run.state,
        run.scaler,
        run.backend,
        run.ema,
    )


def _clip(model: nn.Module, max_norm: float | None) -> float:
    parameters = [p for p in model.parameters() if p.grad is not None]
    if not parameters:
        return 0.0
    if max_norm is None:
        return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in parameters])))  # type: ignore[union-attr]
    return float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))
