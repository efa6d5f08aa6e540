"""Thin command-line entry points over the library. User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import warnings
from pathlib import Path

from nmt.errors import NmtError


def user_errors(main):
    """Turn NmtError (and Ctrl-C) into a one-line message and an exit status instead of a traceback."""

    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            return main(argv)
        except NmtError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # e.g. `nmt-translate ... | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0

    return wrapper


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", module="datasets")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for name in ("datasets", "accelerate", "filelock", "fsspec"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import datasets

    datasets.disable_progress_bars()


@user_errors
def train_main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nmt-train", description="Train an attention RNN translation model.")
    parser.add_argument("config", help="recipe YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set model.cell=lstm (repeatable)")
    parser.add_argument("--run-dir", help="output directory (default: runs/<config name>)")
    parser.add_argument("--data-root", help="folder the recipe's data.dir is relative to "
                        "(default: $NMT_DATA_ROOT or ../shared/data)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    args = parser.parse_args(argv)
    from nmt.config import load_config

    overrides = args.overrides + ([f"data.root={args.data_root}"] if args.data_root else [])
    run_dir = Path(args.run_dir or Path("runs") / Path(args.config).stem)
    saved = run_dir / "config.yaml"
    # A resumed run keeps the config it was started with; --set may still change it (e.g. train.max_steps).
    cfg = load_config(saved if args.resume and saved.exists() else args.config, overrides)
    _quiet_libraries()
    from nmt.train import train

    train(cfg, run_dir, resume=args.resume)
    return 0


@user_errors
def translate_main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nmt-translate", description="Translate text with a trained model.")
    parser.add_argument("model", help="run directory (uses its best checkpoint) or checkpoint directory")
    parser.add_argument("-i", "--input", help="input file (default: stdin)")
    parser.add_argument("-o", "--output", help="output file (default: stdout)")
    parser.add_argument("--beam-size", type=int, help="beam size (default: the checkpoint's decode.beam_size)")
    parser.add_argument("--batch-size", type=int, help="sentences per batch")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    args = parser.parse_args(argv)
    _quiet_libraries()
    from nmt.data import read_lines
    from nmt.translate import Translator

    translator = Translator.load(args.model, device=args.device)
    if args.input:
        lines = read_lines(Path(args.input))
    else:
        try:
            lines = sys.stdin.buffer.read().decode("utf-8").removesuffix("\n").split("\n")
        except UnicodeDecodeError as err:
            raise NmtError(f"stdin: not valid UTF-8 at byte {err.start}") from None
    outputs = translator.translate(lines, beam_size=args.beam_size, batch_size=args.batch_size)
    text = "".join(line + "\n" for line in outputs)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
