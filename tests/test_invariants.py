"""What a sentence's output must not depend on: its batch-mates (greedy, beam, sampling; each CPU
dtype), the number of hypotheses asked for (the 1-best), or the pairs scored with it.

All on the reverse-task model of conftest.py; sentences of different lengths, so that a batch pads.
What is compared is the output (tokens), not the logits: fp32 products are not bitwise the same
alone and batched (MKL picks kernels by the batch's shape; logits differ by ~1e-5 on the Multi30k
model), so the property is that such rounding never changes a token where the model's margins
exceed it. bf16 autocast is held to the same property (its logits were bitwise batch-invariant on
an AMX CPU; other CPUs may round differently).
"""

import pytest

from conftest import run_cli
from nmt import Translator

MODES = {  # decode settings of each search
    "greedy": {"beam_size": 1},
    "beam": {"beam_size": 4},
    "sampling": {"sampling": True, "temperature": 1.5, "seed": 11},
}
DTYPES = ["fp32", "int8", "bf16"]


@pytest.fixture(scope="module")
def lines(reverse_run):
    _, corpus, _ = reverse_run
    test = (corpus / "test.src").read_text().splitlines()
    return sorted(test[:12], key=len)[::3] + test[12:16]  # short and long lines mixed


@pytest.fixture(scope="module")
def translators(reverse_run):
    """One per dtype, even where this CPU would refuse int8 or bf16 on so small a model as slower
    than fp32 (their numbers are what is checked here, not their speed)."""
    root, _, _ = reverse_run
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("nmt.translate.speed_check.SLOWER", float("inf"))
        return {dtype: Translator.load(root / "run", device="cpu", dtype=dtype) for dtype in DTYPES}


def outputs(translator, lines, nbest, **settings):
    """Token lists of each line's hypotheses (or samples), best first."""
    return [[h.tokens for h in hyps] for hyps in translator.translate_hyps(lines, nbest=nbest, **settings)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_a_sentence_decodes_the_same_alone_and_in_a_batch(translators, lines, mode, dtype):
    translator, settings = translators[dtype], MODES[mode]
    nbest = 1 if mode == "greedy" else 3
    batched = outputs(translator, lines, nbest, **settings)
    # A batch of 3 puts each line among other batch-mates than the one batch of all.
    small_batches = outputs(translator, lines[::-1], nbest, batch_size=3, **settings)[::-1]
    alone = [outputs(translator, [line], nbest, **settings)[0] for line in lines]
    assert batched == alone
    assert small_batches == alone


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_the_1best_does_not_depend_on_nbest(translators, reverse_run, alpha):
    """On this confident model the old stopping rule passed too: tests/test_search.py's scripted
    case is the one where a rule that is no bound gives another 1-best."""
    _, corpus, _ = reverse_run
    test = (corpus / "test.src").read_text().splitlines()[:20]
    first = {nbest: [h[0] for h in translators["fp32"].translate_hyps(test, nbest=nbest, beam_size=5,
                                                                      length_penalty=alpha)]
             for nbest in (1, 2, 5)}
    for nbest, hyps in first.items():
        assert [h.tokens for h in hyps] == [h.tokens for h in first[1]], nbest
        assert [h.score for h in hyps] == pytest.approx([h.score for h in first[1]], abs=1e-5)


def test_a_pair_scores_the_same_alone_and_in_a_batch(reverse_run, tmp_path):
    root, corpus, _ = reverse_run
    src = (corpus / "test.src").read_text().splitlines()[:10]
    tgt = (corpus / "test.tgt").read_text().splitlines()[:10]
    pairs = "".join(f"{s}\t{t}\n" for s, t in zip(src, tgt))
    batched = run_cli("nmt-score", str(root / "run"), stdin=pairs)
    assert batched.returncode == 0, batched.stderr
    translator = Translator.load(root / "run", device="cpu")
    alone = [translator.score([s], [t])[0] for s, t in zip(src, tgt)]
    rows = [line.split("\t") for line in batched.stdout.splitlines()]
    assert len(rows) == len(alone)
    for row, one in zip(rows, alone):
        assert float(row[0]) == pytest.approx(one.total, abs=1e-3)
