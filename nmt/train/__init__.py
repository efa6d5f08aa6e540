"""Training with Hugging Face Accelerate: the loop and everything a run carries.

    loop.py         the training loop: a run from start (or --resume) to its test scores
    update.py       one update: micro-batches, loss, gradient clipping, the non-finite skip
    validate.py     validation loss and greedy BLEU
    optim.py        optimizer and learning-rate schedule
    finetune.py     starting from a trained model (train.init_from), freezing parts of it
    run_state.py    what a run carries across restarts: progress, checkpoints saved and kept
    run_checks.py   the checks around a run: its directory, --resume, disk space, replicas
    log.py          metrics.jsonl and the throughput window
    stop_signal.py  Ctrl-C / SIGTERM as a request to save and stop
    cuda_graphs.py  the captured training step over shape buckets (CUDA, train.cuda_graphs)
    buckets.py      those shape buckets

`python -m nmt.train` is `nmt-train`.
"""
