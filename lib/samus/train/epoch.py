"""One training epoch: the steps, their progress reports and the stop request."""
import time
from dataclasses import dataclass

from ..build import train_mode
from .config import epoch_lr
from .steps import train_step


@dataclass
class EpochResult:
    loss_sum: float  # sum over this process's samples of the step loss
    seen: int  # samples this process trained on
    seconds: float
    stopped: bool  # should_stop() asked to end training


def progress_bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, leave=True)


def start_epoch(run, epoch: int) -> None:
    """Learning rate, dataset and sampler of `epoch`; the model in training mode."""
    lr = epoch_lr(run.cfg, epoch)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    run.data.train_ds.set_epoch(epoch)
    run.data.sampler.set_epoch(epoch)
    train_mode(run.net)


def run_epoch(run, epoch: int, progress=None, should_stop=None) -> EpochResult:
    cfg, ctx, steps = run.cfg, run.ctx, run.data.steps
    start_epoch(run, epoch)
    result = EpochResult(0.0, 0, 0.0, False)
    t_epoch = time.time()
    bar = progress_bar(ctx.main and cfg.progress_bar, steps, f"epoch {epoch + 1}/{cfg.epochs}")
    for step, batch in enumerate(run.data.loader, 1):
        loss = train_step(run, batch, epoch, step).item()
        n = len(batch["mask"])
        result.loss_sum += loss * n
        result.seen += n
        rate = result.seen * ctx.world / max(time.time() - t_epoch, 1e-9)
        if bar is not None:
            bar.set_postfix(loss=f"{result.loss_sum / result.seen:.4f}", img_s=f"{rate:.2f}", refresh=False)
            bar.update(1)
        if run.writer is not None:
            run.writer.add_scalar("train/loss", loss, epoch * steps + step)
        if ctx.main and progress is not None and step < steps:
            progress(epoch, step, result.loss_sum / result.seen,
                     {"epochs": cfg.epochs, "steps": steps, "images_per_s": rate})
        if should_stop is not None and ctx.sum([float(bool(should_stop()))], run.device)[0] > 0:
            result.stopped = True
            break
        if step >= steps:
            break
    if bar is not None:
        bar.close()
    result.seconds = time.time() - t_epoch
    return result
