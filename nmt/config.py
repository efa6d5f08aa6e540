"""The configuration tree: typed dataclasses, loaded strictly from YAML, overridden with `--set a.b=c`.

Every default lives in exactly one place, a field below. A recipe lists only what differs.
Unknown keys, wrong types and impossible values fail before any work, with the key named
(nmt/typed_yaml.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nmt.errors import NmtError
from nmt.typed_yaml import apply_overrides, build, merge, option, read_yaml_file

# What train.freeze may name: the encoder (its embedding included) and both sides' embeddings (with
# model.tie_embeddings, the output projection too, as it is the target embedding).
FREEZABLE = ("encoder", "embeddings")
# What --dtype may name: fp32 as trained; int8 weights in the per-step products (CPU); bf16/fp16 autocast.
INFERENCE_DTYPES = ("fp32", "int8", "bf16", "fp16")


@dataclass
class DataConfig:
    root: str = option("", "data root; empty = --data-root, $NMT_DATA_ROOT or ../shared/data")
    dir: str = option("", "corpus folder, relative to the data root unless absolute")
    format: str = option("text", "how splits are stored", choices=("text", "tsv", "jsonl", "hub"))
    src_lang: str = option("de", "source language code (file suffix, column or translation key)")
    tgt_lang: str = option("en", "target language code")
    train: str = option("train", "train split: file prefix, '{lang}' path template, 'src|tgt' paths, or hub split")
    valid: str = option("val", "validation split, same forms as train")
    test: list[str] = option([], "test splits evaluated with the best checkpoint after training")
    hub_name: str = option("", "Hugging Face dataset name or local dataset folder (format: hub)")
    hub_config: str = option("", "Hugging Face dataset configuration name")
    max_len: int = option(100, "training pairs with more pieces on either side are dropped", min=1)
    max_ratio: float = option(3.0, "training pairs whose piece-length ratio exceeds this are dropped", min=1)
    train_limit: int = option(0, "use only the first N training pairs (0 = all)", min=0)
    valid_limit: int = option(0, "use only the first N validation pairs (0 = all)", min=0)
    cache_dir: str = option("", "where prepared (tokenised, memory-mapped) splits are kept; "
                                "empty = $NMT_CACHE_DIR, else $XDG_CACHE_HOME/nmt or ~/.cache/nmt")
    num_proc: int = option(0, "worker processes that tokenise the training split (0 = the cores available)",
                           min=0)


# Which sides' training text tokenizer.sampling re-segments every epoch.
SAMPLED_SIDES = ("none", "source", "target", "both")


@dataclass
class SamplingConfig:
    sides: str = option("none", "subword regularization: the sides whose training pairs are segmented anew every "
                                "epoch, drawn from (train.seed, epoch, line); validation, test and decoding never "
                                "are. Off until measured (docs/data.md#subword-sampling)", choices=SAMPLED_SIDES)
    alpha: float = option(0.1, "unigram: the smoothing of the segmentation distribution (lower draws more "
                               "varied, longer segmentations); bpe: the BPE-dropout probability of each merge",
                          min=0)
    nbest_size: int = option(-1, "unigram: draw among the n best segmentations (-1 = the whole lattice, 4x "
                                 "faster to draw than 64); bpe ignores it", min=-1)

    def __post_init__(self):
        if self.nbest_size in (0, 1):
            raise NmtError(f"tokenizer.sampling.nbest_size: {self.nbest_size} leaves one segmentation to draw; "
                           "use -1 (the whole lattice) or at least 2")


@dataclass
class TokenizerConfig:
    joint: bool = option(True, "one SentencePiece model for both sides (else one per side)")
    vocab_size: int = option(8000, "pieces per model (an upper bound on small corpora)", min=8)
    model_type: str = option("unigram", "SentencePiece algorithm", choices=("unigram", "bpe"))
    character_coverage: float = option(1.0, "share of characters covered by the vocabulary", min=0.5)
    byte_fallback: bool = option(False, "spell unknown characters as UTF-8 bytes instead of <unk>")
    max_sentences: int = option(300_000, "lines sampled (without loading the corpus) to train the model and "
                                         "count each side's pieces; SentencePiece needs about 1.5 KB per "
                                         "line of 60 characters", min=1)
    min_freq: int = option(1, "each side's vocabulary keeps the pieces its training text uses this often; "
                              "others read as <unk> (0 = every piece of the model)", min=0)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # draws from the files; makes none


@dataclass
class ModelConfig:
    cell: str = option("gru", "recurrent cell of encoder and decoder", choices=("rnn", "lstm", "gru"))
    embed_size: int = option(256, "embedding size", min=1)
    hidden_size: int = option(256, "encoder hidden size per direction", min=1)
    decoder_hidden_size: int = option(512, "decoder hidden size", min=1)
    attention_size: int = option(256, "size of the additive attention's hidden layer", min=1)
    num_layers: int = option(1, "layers in encoder and decoder", min=1)
    dropout: float = option(0.3, "dropout on embeddings, between layers and before the output", min=0,
                            architecture=False)
    readout_size: int = option(0, "size of the attentional output o_t = tanh(W_o [s; c; E y]) that the output "
                                  "projection reads (0 = decoder_hidden_size, as in JoeyNMT and OpenNMT-py); "
                                  "tie_embeddings needs it equal to embed_size", min=0)
    tie_embeddings: bool = option(False, "share the target embedding and output projection "
                                         "(set readout_size to embed_size)")
    init: str = option("uniform", "weight initialisation: 'uniform' draws every weight from "
                                  "U(-init_range, init_range) (OpenNMT-py's param_init); 'xavier' uses Xavier "
                                  "input weights, zero biases and N(0, 1) embeddings. Both: orthogonal "
                                  "recurrent matrices, LSTM forget-gate bias 1", choices=("uniform", "xavier"),
                     architecture=False)
    init_range: float = option(0.1, "init uniform: the range of the weights; 0.1 suits layers of a few hundred "
                                    "units, small ones learn faster from more (0.5 for 32-64)", min=0,
                               architecture=False)

    @property
    def readout(self) -> int:
        """The readout's size: readout_size, or the decoder's size where it is 0."""
        return self.readout_size or self.decoder_hidden_size

    def __post_init__(self):
        if self.tie_embeddings and self.readout != self.embed_size:
            raise NmtError(f"model.tie_embeddings: the output projection is the embedding, so model.readout_size "
                           f"({self.readout}) must equal model.embed_size ({self.embed_size})")


def architecture_keys() -> tuple[str, ...]:
    """The model fields that make a model what it is: checkpoints that agree on them compute the same
    kind of function from the same tensors. The others (dropout, initialisation) shape training only,
    so averaging ignores them, and --resume and fine-tuning may change them."""
    return tuple(f.name for f in dataclasses.fields(ModelConfig) if f.metadata["architecture"])


@dataclass
class TrainConfig:
    seed: int = option(42, "seed for initialisation, shuffling and dropout")
    epochs: int = option(10, "maximum epochs", min=1)
    max_steps: int = option(0, "stop after this many updates (0 = no limit)", min=0)
    max_tokens: int = option(4000, "target tokens per update, all processes and micro-batches together: each "
                                   "process's micro-batches hold max_tokens / (processes x accumulate)", min=1)
    accumulate: int = option(1, "micro-batches per update on each process (gradient accumulation)", min=1)
    optimizer: str = option("adam", "optimizer", choices=("adam", "adamw"))
    lr: float = option(1e-3, "peak learning rate", min=0)
    weight_decay: float = option(0.0, "weight decay", min=0)
    clip_norm: float = option(1.0, "gradient norm clipping (0 = off)", min=0)
    schedule: str = option("plateau", "learning-rate schedule after the warm-up",
                           choices=("constant", "plateau", "inverse_sqrt"))
    warmup_steps: int = option(0, "linear warm-up updates", min=0)
    plateau_factor: float = option(0.5, "plateau: learning-rate factor on a stalled validation", min=0)
    plateau_patience: int = option(2, "plateau: decay after N validations in a row without a better BLEU", min=1)
    label_smoothing: float = option(0.1, "label smoothing of the cross-entropy", min=0)
    mixed_precision: str = option("no", "autocast precision", choices=("no", "fp16", "bf16"))
    # off by default until scripts/bench/gpu_issue28.sh has checked the captured path on a GPU.
    cuda_graphs: str = option("off", "replay the decoder's teacher-forced loop as CUDA graphs, batches padded to "
                                     "shape buckets (nmt/train/cuda_graphs.py): auto = on a CUDA device, off elsewhere; "
                                     "on = required (an error off CUDA); off = eager", choices=("auto", "on", "off"))
    eval_every: int = option(1000, "validate every N updates (and once more when training ends)", min=1)
    patience: int = option(5, "stop after N validations in a row without a better BLEU (0 = never)", min=0)
    max_bad_losses: int = option(5, "stop after this many non-finite losses in a row", min=1)
    keep_last: int = option(2, "step checkpoints kept besides the best", min=1)
    log_every: int = option(100, "log training loss every N updates", min=1)
    tensorboard: bool = option(False, "also log to TensorBoard in RUN_DIR/tensorboard")
    threads: int = option(0, "torch CPU threads (0 = torch's default)", min=0)
    init_from: str = option("", "fine-tuning: start a new run from this run's best checkpoint (or this checkpoint), "
                                "with its weights, tokenizer and architecture (nmt-train --init-from); "
                                "config.yaml records the checkpoint's own path")
    init_sha256: str = option("", "fine-tuning: the sha256 of the parent's model.safetensors, recorded by nmt-train; "
                                  "when set, a parent whose weights differ is refused")
    freeze: list[str] = option([], "fine-tuning: parts of the parent left as they are", choices=FREEZABLE)

    def __post_init__(self):
        if self.freeze and not self.init_from:
            raise NmtError("train.freeze: keeps a trained model's parts as they are, so it needs train.init_from "
                           "(nmt-train --init-from)")


@dataclass
class DecodeConfig:
    beam_size: int = option(5, "beam size (1 = greedy)", min=1)
    length_penalty: float = option(1.0, "GNMT length penalty alpha (0 = none)", min=0)
    stopping: str = option("exact", "when beam search ends a sentence: 'exact' once no hypothesis still going "
                           "can beat the n-th best ended one at any length up to the cap; 'early' once K have "
                           "ended and none going beats the K-th best at its present length (Hugging Face's "
                           "default: faster, may miss a longer, better hypothesis). Neither depends on nbest",
                           choices=("exact", "early"))
    max_len_a: float = option(1.5, "output length cap: a * source length + b", min=0)
    max_len_b: int = option(10, "output length cap: a * source length + b", min=1)
    min_len: int = option(1, "minimum output length in pieces (EOS is forbidden before it; 1: no empty output)", min=0)
    batch_size: int = option(64, "sentences per decoding batch", min=1)
    workers: int = option(0, "batches decoded at once, each on a thread with its share of torch's CPU threads "
                          "(0: on a CPU one per torch thread, on a GPU one; nmt/translate/workers.py)", min=0)
    max_input_len: int = option(400, "longer inputs are truncated to this many pieces (with a warning)", min=2)
    sampling: bool = option(False, "draw each token at random instead of searching (beam_size is ignored)")
    temperature: float = option(1.0, "sampling: divide the log-probabilities by this (<1 sharper, >1 flatter)", min=1e-6)
    top_k: int = option(0, "sampling: draw among the k most probable tokens only (0 = all)", min=0)
    top_p: float = option(1.0, "sampling: draw among the most probable tokens whose mass reaches p (1 = all)",
                          min=1e-6, max=1.0)
    seed: int = option(1, "sampling: random seed (the same seed and input give the same output)")
    shortlist: bool = option(False, "score each batch's shortlist only: its sources' likely translations and the "
                             "most frequent target pieces, from the run's lexical table (build it with "
                             "nmt-shortlist RUN; docs/translating.md#vocabulary-shortlist)")
    shortlist_top_k: int = option(10, "shortlist: each source piece's k most likely translations", min=1)
    shortlist_frequent: int = option(100, "shortlist: the n most frequent target pieces, always kept", min=0)


@dataclass
class TextConfig:  # nmt-translate's flags for raw text (nmt/translate/paragraphs.py); not a recipe section
    split_sentences: bool = option(True, "translate a line of several sentences sentence by sentence, in one batch, "
                                   "joined back with its own spacing (a line of one sentence: as it is)")


@dataclass
class LexiconConfig:  # nmt-shortlist's flags (nmt/translate/lexicon.py); not a recipe section
    depth: int = option(100, "translations kept per source piece, most likely first (decode.shortlist_top_k "
                             "may use up to this many)", min=1)
    iterations: int = option(5, "IBM Model 1 EM iterations over the training pairs", min=1)


def decode_options(base: DecodeConfig, nbest: int = 1, **given) -> DecodeConfig:
    """The settings of a search for `nbest` hypotheses (or samples) per sentence: `base` with the
    settings `given` (None: not given), checked by each field's rules and by the rules between them.
    Without a beam_size given, the beam is `base`'s raised to nbest. nmt-translate, nmt-serve and
    `Translator` all decide their settings here; an error names the key."""
    chosen = {key: value for key, value in given.items() if value is not None}
    opts = build(DecodeConfig, {**dataclasses.asdict(base), **chosen}, "")
    if isinstance(nbest, bool) or not isinstance(nbest, int) or nbest < 1:
        raise NmtError(f"nbest: must be at least 1, got {nbest!r}")
    if opts.sampling:
        return opts
    for key in ("temperature", "top_k", "top_p"):
        if key in chosen:
            raise NmtError(f"{key}: applies to sampling only; add sampling")
    if "beam_size" not in chosen:
        return dataclasses.replace(opts, beam_size=max(opts.beam_size, nbest))
    if nbest > opts.beam_size:
        raise NmtError(f"nbest: {nbest} needs beam_size of at least {nbest}, got {opts.beam_size}")
    return opts


@dataclass
class EvalConfig:
    length_buckets: list[int] = option([10, 20, 30], "source-word bucket edges for BLEU by length")
    short_long_threshold: int = option(15, "sentences with more source words than this are 'long'", min=1)
    tokenize: str = option("13a", "sacreBLEU tokenizer")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def from_dict(values: dict, overrides: list[str] = ()) -> Config:
    return build(Config, apply_overrides(values, overrides), "")


def read_values(paths: str | Path | list, overrides: list[str] = ()) -> dict:
    """The raw values of one YAML file, or several merged left to right, with `overrides` set in them."""
    values: dict = {}
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        values = merge(values, read_yaml_file(Path(path)))
    return apply_overrides(values, overrides)


def load_config(paths: str | Path | list, overrides: list[str] = ()) -> Config:
    """Load one YAML file, or several merged left to right (e.g. a recipe, then its cpu.yaml)."""
    return from_dict(read_values(paths, overrides))


def load_saved_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """A config.yaml that nmt wrote (a run's or a checkpoint's), perhaps before some field existed."""
    values = read_yaml_file(Path(path))
    model = values.get("model")
    if isinstance(model, dict) and "readout_size" not in model:
        # Written before model.readout_size: the readout then had the embedding's size.
        model["readout_size"] = model.get("embed_size", ModelConfig.embed_size)
    return from_dict(values, overrides)


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Config) -> str:
    """The config as config.yaml holds it and `nmt-train --print-config` prints it."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(to_yaml(cfg), encoding="utf-8")
