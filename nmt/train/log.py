"""The training log: metrics.jsonl (and Accelerate's trackers), and the loss and throughput of the
updates since the last log line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from accelerate import Accelerator


class MetricsLog:
    """Appends JSON lines to RUN_DIR/metrics.jsonl (main process) and forwards to Accelerate's trackers."""

    def __init__(self, accelerator: Accelerator, path: Path):
        self.accelerator, self.path = accelerator, path

    def __call__(self, step: int, **values) -> None:
        if self.accelerator.is_main_process:
            with self.path.open("a") as f:
                f.write(json.dumps({"step": step, **values}) + "\n")
        self.accelerator.log(values, step=step)


class Window:
    """Training loss and throughput since the last log line. The sums stay on the device; `flush`
    (every train.log_every updates, on every process together) reads them once."""

    def __init__(self, device: torch.device):
        self.device = device
        self.sums, self.start = torch.zeros(3, dtype=torch.float64, device=device), time.perf_counter()

    def add(self, loss_sum: torch.Tensor, tokens: torch.Tensor, skipped: bool) -> None:
        """loss_sum: this process's; tokens: the update's, all processes. A skipped update's loss is NaN
        or meaningless and counts only in the throughput."""
        counted = torch.zeros((), dtype=torch.float64, device=self.device) if skipped else loss_sum.double()
        self.sums += torch.stack([counted, tokens.double() * (not skipped), tokens.double()])

    def flush(self, accelerator: Accelerator, progress, lr: float) -> dict:
        sums = self.sums
        if accelerator.num_processes > 1:  # the loss sums are per process; the token counts already global
            sums = torch.cat([accelerator.reduce(sums[:1].clone(), reduction="sum"), sums[1:]])
        loss, loss_tokens, all_tokens = sums.tolist()
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        values = {"epoch": progress.epoch, "train_loss": round(loss / max(1.0, loss_tokens), 4), "lr": lr,
                  "tgt_tokens_per_s": round(all_tokens / elapsed, 1), "skipped_updates": progress.skipped}
        if accelerator.scaler is not None:
            values["loss_scale"] = accelerator.scaler.get_scale()
        self.__init__(self.device)
        return values
