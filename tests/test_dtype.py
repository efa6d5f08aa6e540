"""Decoding precision: int8 gives a sentence the same translation alone or in any batch and mostly
fp32's translations on a model that is sure, every --dtype works (close to fp32) or fails with one line."""

import json

import pytest
import torch

from conftest import run_cli
from nmt import Translator
from nmt.config import ModelConfig
from nmt.errors import NmtError
from nmt.model.seq2seq import Seq2Seq
from nmt.translate.inference import InferenceModel, per_step_layers


def small_model() -> Seq2Seq:
    torch.manual_seed(0)
    cfg = ModelConfig(cell="lstm", embed_size=32, hidden_size=32, decoder_hidden_size=48,
                      attention_size=24, num_layers=2, dropout=0.0)
    return Seq2Seq(cfg, 50, 40).eval()


def test_int8_quantizes_every_per_step_product_of_a_copy():
    from nmt.translate.int8 import Int8Linear  # here, not above: the other tests also run against torch.ao's layers

    model = small_model()
    fp32, int8 = InferenceModel(model), InferenceModel(model, int8=True)
    names = ["out", "state_out"] + [f"model.{n}" for n in per_step_layers(model)]
    layers = dict(int8.named_modules())
    assert all(isinstance(layers[n], Int8Linear) for n in names), names
    assert len(names) == 2 + 1 + 2 + 1  # output, readout, query, U of 2 layers, W of the second
    assert not any(isinstance(m, Int8Linear) for m in model.modules())  # the model itself stays fp32

    src, lengths = torch.randint(4, 50, (3, 9)), torch.tensor([9, 6, 3])
    with torch.inference_mode():
        a, b = fp32.encode(src, lengths), int8.encode(src, lengths)
        tokens = torch.tensor([2, 2, 2])
        step_a = fp32.step(tokens, fp32.init_state(a), a)
        step_b = int8.step(tokens, int8.init_state(b), b)
    # 8-bit weights and activations: close to fp32 (a few per cent of the logits' spread), not equal.
    diff = (step_a.logits - step_b.logits).abs().max()
    assert 0 < diff < 0.05 * step_a.logits.std(), (diff, step_a.logits.std())


def test_an_int8_layer_gives_each_row_what_it_gives_that_row_alone():
    """Each int8 layer of a step gives a row, bit for bit, what it gives that row alone: the
    activations are scaled per row and the int8 sums are exact (dynamic quantization's one scale per
    batch moved a quiet row's output with a loud batch-mate)."""
    model = small_model()
    int8 = InferenceModel(model, int8=True)
    layers = dict(int8.named_modules())
    names = ["out", "state_out"] + [f"model.{n}" for n in per_step_layers(model)]
    for name in names:
        layer = layers[name]
        x = torch.randn(7, layer.in_features)  # (B, K)
        x[2] *= 30  # one loud row, one quiet one: a shared scale would be set by row 2
        x[5] *= 0.01
        with torch.inference_mode():
            batched = layer(x)
            alone = torch.cat([layer(row.unsqueeze(0)) for row in x])
            sub_batch = layer(x[4:])
        assert torch.equal(alone, batched), name
        assert torch.equal(sub_batch, batched[4:]), name


def missing(a, b):
    raise RuntimeError("_int_mm: not implemented for 'CPU'\nmore detail")


def saturating(a, b):
    """A kernel that sums in int16 and saturates (Int8Linear's 7-bit weights keep vpmaddubsw's
    int16 pairs exact, not whole rows)."""
    return (a.long() @ b.long()).clamp(-32768, 32767).int()


@pytest.mark.parametrize("product, message", [
    (missing, r"needs torch._int_mm .*not implemented for 'CPU'\); use --dtype fp32$"),
    (saturating, r"int8 product saturates on this CPU; use --dtype fp32$")])
def test_a_torch_without_an_exact_int8_product_is_refused_with_one_line(monkeypatch, product, message):
    monkeypatch.setattr(torch, "_int_mm", product)
    with pytest.raises(NmtError, match=message):
        InferenceModel(small_model(), int8=True)


def agreement(a: list[str], b: list[str]) -> float:
    return sum(x == y for x, y in zip(a, b)) / len(a)


@pytest.mark.parametrize("beam", [1, 5])
def test_int8_translates_a_sentence_alone_as_in_a_batch(reverse_run, beam):
    """--batch-size (or a server's other traffic) never changes an int8 translation or its score."""
    root, corpus, _ = reverse_run
    src = (corpus / "test.src").read_text().splitlines()[:40]
    translator = Translator.load(root / "run", device="cpu", dtype="int8")
    batched = translator.translate_hyps(src, beam_size=beam, batch_size=len(src))
    alone = [translator.translate_hyps([line], beam_size=beam)[0] for line in src]
    assert [h[0].tokens for h in alone] == [h[0].tokens for h in batched]
    # The score sums the step's fp32 log-softmax too: equal up to fp32 rounding, not bit for bit.
    assert [h[0].score for h in alone] == pytest.approx([h[0].score for h in batched], abs=1e-4)


@pytest.mark.parametrize("beam", [1, 5])
def test_int8_mostly_translates_as_fp32_on_a_confident_model(reverse_run, beam):
    """8-bit products move the logits by a few per cent of their spread: on the reverse task, where
    the model is sure, nearly every line stays fp32's (a line where two tokens tie may not)."""
    root, corpus, _ = reverse_run
    src = (corpus / "test.src").read_text().splitlines()[:60]
    fp32 = Translator.load(root / "run", device="cpu").translate(src, beam_size=beam)
    int8 = Translator.load(root / "run", device="cpu", dtype="int8").translate(src, beam_size=beam)
    assert agreement(int8, fp32) >= 0.9, [(a, b) for a, b in zip(int8, fp32) if a != b]


def test_every_dtype_works_or_fails_with_one_line(reverse_run):
    """--dtype fp32 gives the default output exactly; int8 and bf16 round the products, so on any
    CPU they give a translation of every line, mostly fp32's, scored close to fp32's where it is."""
    root, corpus, _ = reverse_run
    lines = "\n".join((corpus / "test.src").read_text().splitlines()[:5]) + "\n"
    reference = run_cli("nmt-translate", str(root / "run"), "--device", "cpu", "--format", "json", stdin=lines)
    expected = [json.loads(line) for line in reference.stdout.splitlines()]
    for dtype in ("fp32", "int8", "bf16"):
        out = run_cli("nmt-translate", str(root / "run"), "--device", "cpu", "--dtype", dtype, "--format", "json",
                      stdin=lines)
        assert out.returncode == 0, (dtype, out.stderr[-2000:])
        if dtype == "fp32":
            assert out.stdout == reference.stdout
            continue
        got = [json.loads(line) for line in out.stdout.splitlines()]
        assert [g["line"] for g in got] == [e["line"] for e in expected], dtype
        assert all(g["text"] and g["tokens"] and g["finished"] for g in got), (dtype, got)
        same = [(g, e) for g, e in zip(got, expected) if g["tokens"] == e["tokens"]]
        assert len(same) > len(expected) / 2, (dtype, got, expected)
        # 8-bit or bf16 products move a score by a few per cent (0.04 of -0.33 seen with int8)
        assert [g["score"] for g, _ in same] == pytest.approx([e["score"] for _, e in same], rel=0.25, abs=0.05)
    out = run_cli("nmt-translate", str(root / "run"), "--device", "cpu", "--dtype", "fp16", stdin=lines)
    assert out.returncode == 2 and "fp16 inference needs a CUDA device" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_int8_off_the_cpu_and_unknown_dtypes_are_refused_before_any_work(reverse_run):
    root, _, _ = reverse_run
    translator = Translator.load(root / "run", device="cpu")
    with pytest.raises(NmtError, match="int8 decoding runs on the CPU"):
        Translator(translator.model, translator.tokenizer, translator.cfg, device="meta", dtype="int8")
    with pytest.raises(NmtError, match="dtype 'int4'"):
        Translator.load(root / "run", device="cpu", dtype="int4")
