"""Run by test_distributed.py in each of 2 CPU processes under `accelerate launch`: one update's
gradients over this process's two micro-batches (DDP), then an update whose loss is NaN on rank 1 only.
Writes OUT/rank{R}.pt."""

import sys
from pathlib import Path

import torch
from accelerate import Accelerator

from nmt.config import TrainConfig
from nmt.data.batching import collate
from nmt.train.optim import build_optimizer
from nmt.train.update import accumulate_gradients, update
from test_update import SPLIT_OVER_PROCESSES, examples, tiny_model

acc = Accelerator()
rank, rows = acc.process_index, examples()
model = acc.prepare(tiny_model())
accumulate_gradients(model, acc, [collate(rows[a:b]) for a, b in SPLIT_OVER_PROCESSES[rank]], 0.1)
grads = {name: p.grad.clone() for name, p in acc.unwrap_model(model).named_parameters()}

optimizer = acc.prepare(build_optimizer(TrainConfig(), model.parameters()))
optimizer.zero_grad(set_to_none=True)
before = [p.detach().clone() for p in model.parameters()]
if rank == 1:  # a NaN on this process only
    acc.unwrap_model(model).decoder.out.register_forward_hook(lambda module, args, out: out * float("nan"))
outcome = update(model, optimizer, acc, [collate(rows[rank::2])], 0.1, 1.0, False)
unchanged = all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
torch.save({"grads": grads, "skipped": outcome.skipped, "unchanged": unchanged}, Path(sys.argv[1]) / f"rank{rank}.pt")
