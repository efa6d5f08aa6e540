"""Decoding precision: int8 weights give fp32's translations where the model is sure, every --dtype
works or fails with one line."""

import pytest
import torch
from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

from conftest import run_cli
from nmt import Translator
from nmt.config import ModelConfig
from nmt.errors import NmtError
from nmt.inference import InferenceModel, per_step_layers
from nmt.model import Seq2Seq


def test_int8_quantizes_every_per_step_product_of_a_copy():
    torch.manual_seed(0)
    cfg = ModelConfig(cell="lstm", embed_size=32, hidden_size=32, decoder_hidden_size=48,
                      attention_size=24, num_layers=2, dropout=0.0)
    model = Seq2Seq(cfg, 50, 40).eval()
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


@pytest.mark.parametrize("beam", [1, 5])
def test_int8_translates_as_fp32_on_a_confident_model(reverse_run, beam):
    root, corpus, _ = reverse_run
    src = (corpus / "test.src").read_text().splitlines()[:60]
    fp32 = Translator.load(root / "run", device="cpu").translate(src, beam_size=beam)
    int8 = Translator.load(root / "run", device="cpu", dtype="int8").translate(src, beam_size=beam)
    assert int8 == fp32


def test_every_dtype_works_or_fails_with_one_line(reverse_run):
    root, corpus, _ = reverse_run
    lines = "\n".join((corpus / "test.src").read_text().splitlines()[:5]) + "\n"
    reference = run_cli("nmt-translate", str(root / "run"), "--device", "cpu", stdin=lines)
    for dtype in ("fp32", "int8", "bf16"):
        out = run_cli("nmt-translate", str(root / "run"), "--device", "cpu", "--dtype", dtype, stdin=lines)
        assert out.returncode == 0, (dtype, out.stderr[-2000:])
        assert len(out.stdout.splitlines()) == 5
        if dtype != "bf16":  # bf16 rounds the products: the same lines are likely, not guaranteed
            assert out.stdout == reference.stdout, dtype
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
