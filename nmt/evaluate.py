"""Scoring with sacreBLEU: BLEU and chrF on the whole set and on source-length buckets."""

from __future__ import annotations

from pathlib import Path

from sacrebleu.metrics import BLEU, CHRF

from nmt.config import EvalConfig
from nmt.data.readers import read_lines
from nmt.errors import NmtError


def score(hyps: list[str], refs: list[str], tokenize: str = "13a") -> dict:
    """Corpus BLEU and chrF of detokenized hypotheses against one reference each."""
    bleu, chrf = BLEU(tokenize=tokenize), CHRF()
    b = bleu.corpus_score(hyps, [refs])
    c = chrf.corpus_score(hyps, [refs])
    return {"bleu": round(b.score, 2), "chrf": round(c.score, 2), "n": len(hyps),
            "bleu_signature": str(bleu.get_signature()), "chrf_signature": str(chrf.get_signature())}


def bucket_names(edges: list[int]) -> list[str]:
    """[10, 20] -> ['1-10', '11-20', '21+'] (source words)."""
    names, low = [], 1
    for edge in edges:
        names.append(f"{low}-{edge}")
        low = edge + 1
    return names + [f"{low}+"]


def bucket_of(words: int, edges: list[int]) -> int:
    return next((i for i, edge in enumerate(edges) if words <= edge), len(edges))


def by_length(hyps: list[str], refs: list[str], srcs: list[str], edges: list[int],
              threshold: int, tokenize: str = "13a") -> dict:
    """Scores overall, for short (<= threshold source words) and long sentences, and per bucket."""
    words = [len(s.split()) for s in srcs]

    def subset(keep):
        idx = [i for i, w in enumerate(words) if keep(w)]
        if not idx:
            return {"bleu": None, "chrf": None, "n": 0}
        return score([hyps[i] for i in idx], [refs[i] for i in idx], tokenize)

    result = {"all": score(hyps, refs, tokenize),
              f"short (<= {threshold})": subset(lambda w: w <= threshold),
              f"long (> {threshold})": subset(lambda w: w > threshold)}
    for i, name in enumerate(bucket_names(edges)):
        result[name] = subset(lambda w, i=i: bucket_of(w, edges) == i)
    return result


def format_table(results: dict) -> str:
    lines = [f"{'subset':<16} {'sentences':>9} {'BLEU':>7} {'chrF':>7}"]
    for name, r in results.items():
        bleu = "-" if r["bleu"] is None else f"{r['bleu']:.2f}"
        chrf = "-" if r["chrf"] is None else f"{r['chrf']:.2f}"
        lines.append(f"{name:<16} {r['n']:>9} {bleu:>7} {chrf:>7}")
    lines.append(f"BLEU: {results['all']['bleu_signature']}")
    lines.append(f"chrF: {results['all']['chrf_signature']}")
    return "\n".join(lines)


def format_split(name: str, result: dict) -> str:
    """One split's scores, as `evaluate_checkpoint` returns them, as the table the commands print."""
    table = {subset: scores for subset, scores in result.items() if isinstance(scores, dict)}
    return f"{name} (beam {result['beam_size']}, {result['sentences_per_s']:.1f} sentences/s):\n{format_table(table)}"


def evaluate_files(hyp: str, ref: str, src: str | None, edges: list[int] | None,
                   threshold: int | None) -> dict:
    """Score a hypothesis file against a reference file (bucketed by the source file when given)."""

    defaults = EvalConfig()
    hyps, refs = read_lines(Path(hyp)), read_lines(Path(ref))
    srcs = read_lines(Path(src)) if src else None
    for path, lines in ((hyp, hyps), (src, srcs)):
        if lines is not None and len(lines) != len(refs):
            raise NmtError(f"{path} has {len(lines)} lines but {ref} has {len(refs)}")
    if srcs is None:
        results = {"all": score(hyps, refs, defaults.tokenize)}
    else:
        results = by_length(hyps, refs, srcs, edges or defaults.length_buckets,
                            threshold or defaults.short_long_threshold, defaults.tokenize)
    return results
