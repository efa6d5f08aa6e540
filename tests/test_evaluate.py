"""BLEU by length bucket equals sacreBLEU computed independently on each subset."""

import json

import sacrebleu

from conftest import run_cli, write_lines
from nmt.evaluate import bucket_names, by_length

SRC = ["ein kurzer Satz", "ein etwas längerer Satz mit mehr als fünf Wörtern darin",
       "kurz", "noch ein sehr langer Satz der weit über zehn Wörter hat und noch mehr Wörter"]
REF = ["a short sentence", "a somewhat longer sentence with more than five words in it",
       "short", "yet another very long sentence that has well over ten words and even more words"]
HYP = ["a short phrase", "a slightly longer sentence with more than five words in it",
       "brief", "another very long sentence that has far over ten words and more words"]


def test_buckets_match_sacrebleu_on_filtered_subsets():
    result = by_length(HYP, REF, SRC, edges=[5, 10], threshold=5)
    assert bucket_names([5, 10]) == ["1-5", "6-10", "11+"]
    subsets = {"all": [0, 1, 2, 3], "short (<= 5)": [0, 2], "long (> 5)": [1, 3],
               "1-5": [0, 2], "6-10": [1], "11+": [3]}
    for name, idx in subsets.items():
        expected = sacrebleu.corpus_bleu([HYP[i] for i in idx], [[REF[i] for i in idx]])
        chrf = sacrebleu.corpus_chrf([HYP[i] for i in idx], [[REF[i] for i in idx]])
        assert result[name]["n"] == len(idx)
        assert result[name]["bleu"] == round(expected.score, 2), name
        assert result[name]["chrf"] == round(chrf.score, 2), name


def test_empty_bucket_reports_no_score():
    result = by_length(HYP, REF, SRC, edges=[30, 40], threshold=40)
    assert result["long (> 40)"] == {"bleu": None, "chrf": None, "n": 0}


def test_nmt_evaluate_on_files(tmp_path):
    hyp, ref, src = (write_lines(tmp_path / n, lines) for n, lines in (("h", HYP), ("r", REF), ("s", SRC)))
    out = run_cli("nmt-evaluate", "--hyp", str(hyp), "--ref", str(ref), "--src", str(src),
                  "--buckets", "5,10", "--threshold", "5", "--json", str(tmp_path / "scores.json"))
    assert out.returncode == 0, out.stderr
    assert "short (<= 5)" in out.stdout and "nrefs:1|case:mixed" in out.stdout
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["all"]["bleu"] == round(sacrebleu.corpus_bleu(HYP, [REF]).score, 2)


def test_nmt_evaluate_refuses_files_of_different_length(tmp_path):
    hyp, ref = write_lines(tmp_path / "h", HYP[:3]), write_lines(tmp_path / "r", REF)
    out = run_cli("nmt-evaluate", "--hyp", str(hyp), "--ref", str(ref))
    assert out.returncode == 2 and "has 3 lines but" in out.stderr and "Traceback" not in out.stderr
