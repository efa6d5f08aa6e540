"""End to end through the real commands: nmt-train on a tiny task, then nmt-translate on its run."""

import json

from conftest import run_cli
from nmt.evaluate import score


def one_word_wrong(refs: list[str]) -> list[str]:
    """The references with their last word replaced: a translation wrong in every sentence."""
    return [" ".join(ref.split()[:-1] + ["v0" if ref.split()[-1] != "v0" else "v1"]) for ref in refs]


def test_training_learns_the_reverse_task(reverse_run):
    """Learning is measured against baselines computed here, not a constant: the run must beat a
    translation that has one word wrong in every sentence (BLEU about 70 on these splits), on
    validation (its best evaluation: at a constant learning rate the last may wobble, 72.6 once
    on an AMD EPYC) and on test, where most sentences come out exactly right."""
    root, corpus, _ = reverse_run
    lines = [json.loads(x) for x in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [x["train_loss"] for x in lines if "train_loss" in x]
    bleus = [x["valid_bleu"] for x in lines if "valid_bleu" in x]
    assert losses[-1] < 0.25 * losses[0], losses
    val_refs = (corpus / "val.tgt").read_text().splitlines()
    assert max(bleus) > score(one_word_wrong(val_refs), val_refs)["bleu"], bleus
    results = json.loads((root / "run" / "results.json").read_text())["test"]["test"]["all"]
    refs = (corpus / "test.tgt").read_text().splitlines()
    hyps = (root / "run" / "test.hyp").read_text().splitlines()  # what results.json scored
    assert results["bleu"] == score(hyps, refs)["bleu"]
    assert results["bleu"] > score(one_word_wrong(refs), refs)["bleu"]
    assert sum(h == r for h, r in zip(hyps, refs)) > len(refs) / 2
    for link in ("best", "last"):
        assert (root / "run" / link / "model.safetensors").exists()


def test_translate_writes_one_line_per_input_line(reverse_run):
    """nmt-translate gives each input line its own output line, a blank one for a blank line, and
    the test split's lines the translations that the run's own evaluation wrote (test.hyp)."""
    root, corpus, _ = reverse_run
    src = (corpus / "test.src").read_text().splitlines()
    stdin = "\n".join(src[:20] + ["", "w1"] + src[20:]) + "\n"
    result = run_cli("nmt-translate", str(root / "run"), stdin=stdin)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout.split("\n")[:-1]
    assert len(out) == len(src) + 2
    assert out[20] == "" and out[21] != ""
    assert out[:20] + out[22:] == (root / "run" / "test.hyp").read_text().splitlines()


def test_translate_reads_and_writes_files(reverse_run, tmp_path):
    root, corpus, _ = reverse_run
    out = tmp_path / "out.txt"
    result = run_cli("nmt-translate", str(root / "run" / "last"), "-i", str(corpus / "val.src"), "-o", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(out.read_text().splitlines()) == len((corpus / "val.src").read_text().splitlines())


def test_a_second_run_in_the_same_directory_is_refused(reverse_run):
    root, _, _ = reverse_run
    result = run_cli("nmt-train", str(root / "tiny.yaml"), "--run-dir", str(root / "run"))
    assert result.returncode == 2
    assert "already holds a run; pass --resume" in result.stderr
    assert "Traceback" not in result.stderr
