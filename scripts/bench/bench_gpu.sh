#!/usr/bin/env bash
# The GPU checks in one run, sized for a short lease (docs/benchmarks.md, section "GPU"):
#   scripts/bench/bench_gpu.sh OUT_DIR [TRAIN_SECONDS]
# 1. the CUDA-only test (autocast's cuDNN RNN rule under bf16);
# 2. training speed of the full recipe (Multi30k LSTM by default) against the cuDNN floor of the same shapes,
#    in fp32, bf16 and fp16 (scripts/bench/bench.py: ours and the floor take turns batch by batch);
# 3. that recipe trained in bf16 for TRAIN_SECONDS (default 240; SIGTERM then stops it with a
#    checkpoint), and the test BLEU of its best checkpoint;
# 4. decoding of that checkpoint in fp32, bf16 and fp16: sentences/s greedy and beam 5, and BLEU;
# 5. a short fp16 training run, whose log counts the updates skipped for overflow.
# The data root is $NMT_DATA_ROOT (default ../shared/data); $BENCH_STEPS timed updates (default 100);
# $BENCH_RECIPE (default recipes/multi30k_de_en/full.yaml) and $BENCH_CELL (default lstm) choose the model.
# A dry run on a CPU: BENCH_SET='--set model.hidden_size=16 ...' BENCH_STEPS=1 scripts/bench/bench_gpu.sh OUT 30
# Everything goes to OUT_DIR, flat.
set -uo pipefail
out=${1:?usage: scripts/bench/bench_gpu.sh OUT_DIR [TRAIN_SECONDS]}
seconds=${2:-240}
py=${PYTHON:-python3}
# shellcheck disable=SC2206  # $BENCH_SET: more --set K=V words, e.g. a tiny model for a dry run on a CPU
recipe=("${BENCH_RECIPE:-recipes/multi30k_de_en/full.yaml}" --set "model.cell=${BENCH_CELL:-lstm}" ${BENCH_SET:-})
run=${TMPDIR:-/tmp}/nmt-gpu-${BENCH_CELL:-lstm}
mkdir -p "$out"
exec > >(tee -a "$out/log.txt") 2>&1
stamp() { echo "== $(date -u +%FT%TZ) $*"; }

stamp environment
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$py -c "import torch, accelerate, datasets, sacrebleu, sentencepiece as s; print('torch', torch.__version__,
'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'accelerate', accelerate.__version__,
'datasets', datasets.__version__, 'sacrebleu', sacrebleu.__version__, 'sentencepiece', s.__version__)"
git rev-parse --short HEAD 2>/dev/null

stamp CUDA test
$py -m pytest -q -rs -p no:cacheprovider tests/test_train_unit.py -k cudnn

stamp "training in bf16 for ${seconds} s"
rm -rf "$run"
timeout -s TERM "$seconds" $py -m nmt train "${recipe[@]}" --set train.mixed_precision=bf16 --run-dir "$run"
if [ ! -f "$run/results.json" ]; then
    $py -m nmt evaluate "$run" --split test --beam-size 5 --json "$run/results.json"
fi
cp "$run/metrics.jsonl" "$out/train-metrics.jsonl"; cp "$run/results.json" "$out/train-results.json"

for precision in no bf16 fp16; do
    stamp "training speed against the floor, mixed_precision=$precision"
    extra=()
    [ "$precision" = no ] && extra=(--checkpoint "$run" --decode-dtypes fp32 bf16 fp16)
    $py scripts/bench/bench.py "${recipe[@]}" --set train.mixed_precision=$precision --tokenizer "$run" \
        --steps "${BENCH_STEPS:-100}" --warmup 10 "${extra[@]}" --json "$out/bench-$precision.json"
done

stamp "fp16 training, 400 updates"
$py -m nmt train "${recipe[@]}" --set train.mixed_precision=fp16 --set train.max_steps=400 \
    --set train.eval_every=400 --run-dir "$run-fp16" 2>&1 | grep -i -E "skipped|loss scale|step 400|valid" | tail -20
stamp done
