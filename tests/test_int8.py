"""int8 products: each kernel's sums against integer arithmetic done apart, a row's output alone as
in any batch and on any thread count, and the speed check that keeps the fastest kernel or refuses
a precision slower than fp32 (nmt/translate/int8.py, nmt/translate/speed_check.py)."""

import re

import pytest
import torch

from nmt.config import ModelConfig
from nmt.errors import NmtError
from nmt.model.seq2seq import Seq2Seq
from nmt.translate import speed_check
from nmt.translate.inference import InferenceModel, per_step_layers
from nmt.translate.int8 import (ACTIVATION_MAX, KERNELS, WEIGHT_MAX, Int8Linear, IntMM, OneDnnU8S8,
                                exact_on_this_cpu, quantize_rows)

EXACT_HERE = [k for k in KERNELS if exact_on_this_cpu(k)]


def small_model() -> Seq2Seq:
    torch.manual_seed(0)
    cfg = ModelConfig(cell="lstm", embed_size=32, hidden_size=32, decoder_hidden_size=48,
                      attention_size=24, num_layers=2, dropout=0.0)
    return Seq2Seq(cfg, 50, 40).eval()


def int8_layers(model) -> list[str]:
    return ["out", "state_out"] + [f"model.{n}" for n in per_step_layers(model)]


def test_int_mm_is_exact_on_every_cpu_and_some_kernel_is():
    assert IntMM in EXACT_HERE  # the reference: oneDNN's int8 x int8 on any x86-64


@pytest.mark.parametrize("kernel", EXACT_HERE, ids=lambda k: k.name)
def test_a_kernel_sums_as_integer_arithmetic_does(kernel):
    torch.manual_seed(1)
    x, weight = torch.randn(9, 200), torch.randn(70, 200)
    q, _ = quantize_rows(x, ACTIVATION_MAX)
    q_weight, _ = quantize_rows(weight, WEIGHT_MAX)
    expected = q.long() @ q_weight.long().t()  # (B, N) in int64, apart from any kernel
    found = kernel.sums(q.clone(), kernel.pack(q_weight.to(torch.int8)))
    assert torch.equal(found.long(), expected)


def test_onednn_sums_stay_exact_at_the_widest_input_it_takes():
    """fp32 holds the u8 x s8 kernel's sums exactly up to K = MAX_IN at the largest values; one input
    more is refused, so such a layer is summed by int_mm."""
    if OneDnnU8S8 not in EXACT_HERE:
        pytest.skip("no oneDNN u8 x s8 product in this torch")
    K = OneDnnU8S8.MAX_IN
    q = torch.full((2, K), float(ACTIVATION_MAX))
    q[1] *= -1
    weight = torch.full((3, K), WEIGHT_MAX, dtype=torch.int8)
    found = OneDnnU8S8.sums(q.clone(), OneDnnU8S8.pack(weight))
    assert torch.equal(found.long(), q.long() @ weight.t().long())
    assert OneDnnU8S8.fits(K) and not OneDnnU8S8.fits(K + 1) and IntMM.fits(10 * K)


def test_every_kernel_gives_the_same_outputs():
    """The sums are exact and the rescaling is the same: which kernel ran never shows."""
    torch.manual_seed(2)
    layer, x = torch.nn.Linear(48, 30), torch.randn(11, 48)
    with torch.inference_mode():
        outputs = [Int8Linear(layer, kernel)(x) for kernel in EXACT_HERE]
    assert all(torch.equal(outputs[0], y) for y in outputs[1:])


def test_int8_quantizes_every_per_step_product_of_a_copy():
    model = small_model()
    fp32, int8 = InferenceModel(model), InferenceModel(model, int8_kernel=EXACT_HERE[0])
    layers = dict(int8.named_modules())
    names = int8_layers(model)
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


@pytest.mark.parametrize("kernel", EXACT_HERE, ids=lambda k: k.name)
def test_an_int8_layer_gives_a_row_what_it_gives_it_alone_on_any_thread_count(kernel):
    """Bit for bit, whatever the batch and the threads: the activations are scaled per row and the
    sums are exact (dynamic quantization's one scale per batch moved a quiet row's output with a
    loud batch-mate)."""
    model = small_model()
    int8 = InferenceModel(model, int8_kernel=kernel)
    layers, threads = dict(int8.named_modules()), torch.get_num_threads()
    for name in int8_layers(model):
        layer = layers[name]
        x = torch.randn(7, layer.in_features)  # (B, K)
        x[2] *= 30  # one loud row, one quiet one: a shared scale would be set by row 2
        x[5] *= 0.01
        with torch.inference_mode():
            batched = layer(x)
            alone = torch.cat([layer(row.unsqueeze(0)) for row in x])
            sub_batch = layer(x[4:])
            torch.set_num_threads(1)
            try:
                one_thread = layer(x)
            finally:
                torch.set_num_threads(threads)
        assert torch.equal(alone, batched), name
        assert torch.equal(sub_batch, batched[4:]), name
        assert torch.equal(one_thread, batched), name


def saturating(a, b):
    """A kernel that sums in int16 and saturates (Int8Linear's 7-bit weights keep vpmaddubsw's
    int16 pairs exact, not whole rows)."""
    return (a.long() @ b.long()).clamp(-32768, 32767).int()


def missing(*args):
    raise RuntimeError("not implemented for 'CPU'\nmore detail")


def test_a_saturating_or_missing_kernel_is_never_used(monkeypatch):
    monkeypatch.setattr(torch, "_int_mm", saturating)
    assert not exact_on_this_cpu(IntMM)
    monkeypatch.setattr(torch, "_int_mm", missing)
    assert not exact_on_this_cpu(IntMM)
    monkeypatch.setattr(OneDnnU8S8, "pack", missing)
    with pytest.raises(NmtError, match=r"^--dtype int8: torch \S+ has no exact int8 matrix product on this CPU "
                                       r"\(.*\); use --dtype fp32$"):
        speed_check.fastest_int8_kernel([torch.nn.Linear(16, 8)])


def measured(monkeypatch, factors: dict):
    """The speed check sees each run take `factors[name]` times fp32's time."""
    def times(runs, repeats=speed_check.REPEATS):
        return {name: factors.get(getattr(name, "name", name), 1.0) * 1e-3 for name in runs}
    monkeypatch.setattr(speed_check, "fastest_times", times)


def test_the_fastest_exact_kernel_is_kept(monkeypatch):
    measured(monkeypatch, {"int_mm": 0.9, "onednn_u8s8": 0.5})
    layers = [torch.nn.Linear(16, 8), torch.nn.Linear(8, 24)]
    expected = OneDnnU8S8 if OneDnnU8S8 in EXACT_HERE else IntMM
    assert speed_check.fastest_int8_kernel(layers) is expected
    measured(monkeypatch, {"int_mm": 0.5, "onednn_u8s8": 0.9})
    assert speed_check.fastest_int8_kernel(layers) is IntMM
    # A layer wider than oneDNN's exact sums leaves int_mm only.
    measured(monkeypatch, {"int_mm": 0.9, "onednn_u8s8": 0.1})
    assert speed_check.fastest_int8_kernel(layers + [torch.nn.Linear(OneDnnU8S8.MAX_IN + 1, 2)]) is IntMM


def measured_step(monkeypatch, ratio: float):
    """The step check sees the precision's step take `ratio` times fp32's."""
    timed = {"ratio": ratio, "fp32": 1e-3, "run": ratio * 1e-3}
    monkeypatch.setattr(speed_check, "paired_ratio", lambda fp32, run: timed)


@pytest.mark.parametrize("dtype", ["int8", "bf16"])
def test_a_precision_slower_than_fp32_is_refused_in_one_line_and_one_as_fast_warned(monkeypatch, caplog, dtype):
    fp32 = InferenceModel(small_model())
    member = InferenceModel(small_model(), int8_kernel=IntMM) if dtype == "int8" else fp32
    autocast = torch.bfloat16 if dtype == "bf16" else None
    for ratio in (12.0, speed_check.SLOWER):
        measured_step(monkeypatch, ratio)
        with pytest.raises(NmtError, match=rf"^--dtype {dtype}: a decoding step takes \d+\.\d\dx fp32's time on this "
                                           r"CPU \(.* ms against .* ms for 64 rows\); use --dtype fp32$") as err:
            speed_check.check_step(dtype, fp32, member, 64, autocast)
        assert "\n" not in str(err.value)
    for ratio, warned in ((1.0, True), (speed_check.SAME, True), (0.9, False)):
        measured_step(monkeypatch, ratio)
        caplog.clear()
        speed_check.check_step(dtype, fp32, member, 64, autocast)
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert bool(warnings) == warned, (ratio, warnings)
        assert all(w.endswith("no faster, and rounded; --dtype fp32 decodes as fast, exactly") for w in warnings)


def test_a_step_ratio_is_the_median_of_pairs_in_alternating_order():
    """Against an independent count: the run twice fp32's time in every pair, whatever the order."""
    order = []

    def run(name, seconds):
        def call():
            order.append(name)
            speed_check.time.sleep(seconds)
        return call

    timed = speed_check.paired_ratio(run("fp32", 0.002), run("run", 0.004), pairs=5)
    assert 1.6 < timed["ratio"] < 2.6 and timed["fp32"] < timed["run"]
    assert order[2:6] == ["run", "fp32", "fp32", "run"] and len(order) == 2 + 2 * 5


def test_the_check_times_real_steps_and_keeps_or_refuses_in_one_line():
    """Unmocked: the timed call is a step of the rows asked for, and the answer either way is one
    of the two (which one depends on this CPU)."""
    fp32, member = InferenceModel(small_model()), InferenceModel(small_model(), int8_kernel=EXACT_HERE[0])
    out = speed_check.one_step(member, 12)()
    assert out.logits.shape == (12, member.vocab_size) and torch.isfinite(out.logits).all()
    try:
        speed_check.check_step("int8", fp32, member, 64)
    except NmtError as err:
        assert re.fullmatch(r"--dtype int8: a decoding step takes \d+\.\d\dx fp32's time on this CPU "
                            r"\(.* for 64 rows\); use --dtype fp32", str(err)), str(err)


def test_the_speed_check_takes_milliseconds_not_seconds_on_a_hopeless_kernel(monkeypatch):
    """A kernel far slower than fp32 is timed once, not REPEATS times."""
    calls = {"fp32": 0, "slow": 0}

    def run(name, seconds):
        def call():
            calls[name] += 1
            speed_check.time.sleep(seconds)
        return call

    times = speed_check.fastest_times({"fp32": run("fp32", 0.001), "slow": run("slow", 0.1)})
    assert times["slow"] > speed_check.HOPELESS * times["fp32"]
    # Dropped after its first turn (its second, if a burst of load slowed fp32's first).
    assert calls["fp32"] == 1 + speed_check.REPEATS and calls["slow"] <= 3, calls


def test_a_hopeless_step_is_timed_once_not_in_every_pair():
    calls = {"fp32": 0, "run": 0}

    def run(name, seconds):
        def call():
            calls[name] += 1
            speed_check.time.sleep(seconds)
        return call

    timed = speed_check.paired_ratio(run("fp32", 0.001), run("run", 0.1))
    assert timed["ratio"] > speed_check.HOPELESS and calls == {"fp32": 2, "run": 2}, calls
