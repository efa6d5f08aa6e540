"""Validation during training: perplexity and greedy BLEU, each process taking a share of the sentences."""

from __future__ import annotations

import dataclasses
import math

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from nmt.config import Config
from nmt.data import batching
from nmt.data.tokenizer import Tokenizer
from nmt.evaluate import score
from nmt.train.update import token_loss_sum
from nmt.translate.decoding import decode_ids
from nmt.vocab import PAD


@torch.inference_mode()
def validate(model, valid_ds, tokenizer: Tokenizer, cfg: Config, accelerator: Accelerator,
             max_tokens: int) -> dict:
    """Validation loss/perplexity and greedy BLEU; each process takes a share of the sentences."""
    model.eval()
    total, tokens = torch.zeros(2, device=accelerator.device).unbind(0)
    with accelerator.split_between_processes(list(range(len(valid_ds)))) as mine:
        share = valid_ds.select(mine)
        loader, _ = batching.make_loader(share, max_tokens, 0, shuffle=False)
        with accelerator.autocast():
            for batch in loader:
                batch = batching.Batch(*(t.to(accelerator.device) for t in batch))
                logits = model(batch.src, batch.src_lengths, batch.tgt_in)
                total = total + token_loss_sum(logits, batch.tgt_out, 0.0)
                tokens = tokens + (batch.tgt_out != PAD).sum()
            greedy = dataclasses.replace(cfg.decode, beam_size=1)
            hyps = decode_ids(model, list(share["src_ids"]), greedy, accelerator.device) if len(share) else []
        pairs = list(zip(mine, tokenizer.decode([h[0].tokens for h in hyps])))
    total, tokens = accelerator.reduce(torch.stack([total, tokens]), reduction="sum").unbind(0)
    ordered = [text for _, text in sorted(gather_object(pairs))]
    bleu = score(ordered, list(valid_ds["tgt"]), cfg.eval.tokenize)["bleu"]
    loss = float(total / tokens.clamp(min=1))
    model.train()
    return {"valid_loss": round(loss, 4), "valid_ppl": round(math.exp(min(loss, 50)), 2), "valid_bleu": bleu}
