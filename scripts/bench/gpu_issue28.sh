#!/usr/bin/env bash
# Every GPU figure of issue 28 in one run of under 10 minutes on one H100/H200:
#   scripts/bench/gpu_issue28.sh OUT_DIR [TRAIN_SECONDS]
# 1. the GPU tests of the captured path (tests/test_cuda_graphs.py: loss, gradients, translations vs
#    eager; a change of bucket, validation, a checkpoint and --resume) and the bucketing tests;
# 2. the padding the buckets cost on the recipe's batches (scripts/bench/bucket_padding.py);
# 3. the recipe trained for TRAIN_SECONDS (default 75) in bf16 with train.cuda_graphs=on (the
#    captured path end to end; SIGTERM stops it with a checkpoint), for the decoding figures;
# 4. training tokens/s against the cuDNN floor (scripts/bench/bench.py), train.cuda_graphs off and
#    on, in fp32, bf16 and fp16; with fp32 also greedy and beam-5 sentences/s of that checkpoint in
#    fp32 and bf16;
# 5. summary.json and summary.md in OUT_DIR: each figure beside issue 28's target; log.txt, and raw.tgz
#    with every report.
# Python: $PYTHON (default python3) with a CUDA torch. The GPU machine has no package registry: carry
# a wheel folder and name it in $WHEELS (made here with
#   pip download --only-binary=:all: --python-version 3.X -d WHEELS accelerate datasets sacrebleu \
#       sentencepiece safetensors pyyaml tqdm pytest setuptools
# ); the script installs from it offline, then nmt itself (editable, no dependencies) so that the
# tests find nmt-train beside $PYTHON. $BENCH_STEPS timed updates (default 60); $NMT_DATA_ROOT the data
# (default ../shared/data); $BENCH_RECIPE / $BENCH_CELL the model (default Multi30k full.yaml, lstm).
set -uo pipefail
out=${1:?usage: scripts/bench/gpu_issue28.sh OUT_DIR [TRAIN_SECONDS]}
seconds=${2:-75}
py=${PYTHON:-python3}
steps=${BENCH_STEPS:-60}
# shellcheck disable=SC2206  # $BENCH_SET: more --set K=V words, e.g. a tiny model for a dry run on a CPU
recipe=("${BENCH_RECIPE:-recipes/multi30k_de_en/full.yaml}" --set "model.cell=${BENCH_CELL:-lstm}" ${BENCH_SET:-})
run=${TMPDIR:-/tmp}/nmt-issue28
mkdir -p "$out/raw"
out=$(cd "$out" && pwd)
raw=$out/raw  # packed into raw.tgz at the end: few files come back from a leased machine
exec > >(tee -a "$out/log.txt") 2>&1
stamp() { echo "== $(date -u +%FT%TZ) $*"; }

stamp environment
if [ -n "${WHEELS:-}" ]; then
    $py -m pip install -q --no-index --find-links "$WHEELS" accelerate datasets sacrebleu sentencepiece \
        safetensors pyyaml tqdm pytest setuptools
fi
[ -x "$(dirname "$(command -v "$py")")/nmt-train" ] || $py -m pip install -q --no-index --no-deps --no-build-isolation -e .
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$raw/gpu.txt"
$py -c "import torch, accelerate; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn',
torch.backends.cudnn.version(), 'accelerate', accelerate.__version__)" | tee -a "$raw/gpu.txt"
git rev-parse --short HEAD 2>/dev/null | tee -a "$raw/gpu.txt"

stamp "GPU tests (captured vs eager)"
timeout 240 $py -m pytest -q -rs -p no:cacheprovider tests/test_cuda_graphs.py tests/test_buckets.py \
    --junitxml="$raw/tests.xml"

stamp "padding of the buckets"
$py scripts/bench/bucket_padding.py "${recipe[@]}" --json "$raw/padding.json" | tail -6

stamp "training in bf16 with graphs on for ${seconds} s"
rm -rf "$run"
timeout -s TERM "$seconds" $py -m nmt train "${recipe[@]}" --set train.mixed_precision=bf16 \
    --set train.cuda_graphs=on --set train.eval_every=100000 --run-dir "$run"
cp "$run/metrics.jsonl" "$raw/train-metrics.jsonl" 2>/dev/null

for precision in no bf16 fp16; do
    for graphs in off on; do
        stamp "training speed against the floor, mixed_precision=$precision, cuda_graphs=$graphs"
        extra=()
        [ "$precision" = no ] && [ "$graphs" = on ] && [ -d "$run/last" ] &&
            extra=(--checkpoint "$run" --decode-dtypes fp32 bf16)
        timeout 150 $py scripts/bench/bench.py "${recipe[@]}" --set train.mixed_precision=$precision \
            --set train.cuda_graphs=$graphs --steps "$steps" --warmup 10 "${extra[@]}" \
            --json "$raw/bench-$precision-$graphs.json"
    done
done

stamp summary
$py - "$out" "$raw" <<'PY'
import json, sys
from pathlib import Path
out, raw = Path(sys.argv[1]), Path(sys.argv[2])
load = lambda name: json.loads((raw / name).read_text()) if (raw / name).exists() else None
rows, summary = [], {"gpu": (raw / "gpu.txt").read_text().strip().splitlines(), "padding": load("padding.json")}
for p in ("no", "bf16", "fp16"):
    for g in ("off", "on"):
        bench = load(f"bench-{p}-{g}.json")
        if bench:
            t = bench["training"]
            summary[f"train-{p}-{g}"] = {k: t.get(k) for k in ("tgt_tokens_per_s", "ratio_to_floor", "peak_memory_mb",
                                                                "capture_pass_s")}
            rows.append((f"training {p} graphs {g}: target tokens/s (x floor; target <= 2.5)",
                         f"{t['tgt_tokens_per_s']} ({t.get('ratio_to_floor')})"))
            for dec in bench.get("decoding", []):
                if "error" not in dec:
                    summary[f"decode-{dec['dtype']}"] = dec
                    rows += [(f"{dec['dtype']} greedy sentences/s (target >= 8000)", dec["beam1"]["sentences_per_s"]),
                             (f"{dec['dtype']} beam 5 sentences/s (target >= 3200)", dec["beam5"]["sentences_per_s"])]
for g in ("off", "on"):
    fp32, bf16 = summary.get(f"train-no-{g}"), summary.get(f"train-bf16-{g}")
    if fp32 and bf16:
        rows.append((f"bf16 / fp32, graphs {g} (target >= 1.2)", round(bf16["tgt_tokens_per_s"] / fp32["tgt_tokens_per_s"], 2)))
if summary["padding"]:
    rows.append(("bucket padding, padded / real target tokens (graphs)",
                 f"{summary['padding']['padded_over_real']} ({summary['padding']['buckets']})"))
(out / "summary.json").write_text(json.dumps(summary, indent=1))
md = "\n".join(["| figure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])
(out / "summary.md").write_text(" ".join(summary["gpu"]) + "\n\n" + md + "\n")
print(md)
PY
tar czf "$out/raw.tgz" -C "$out" raw && rm -rf "$raw"
stamp done
