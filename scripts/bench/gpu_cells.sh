#!/usr/bin/env bash
# A recipe's three cells trained side by side on one GPU, sized for a short lease:
#   scripts/bench/gpu_cells.sh RECIPE_DIR OUT_DIR [TRAIN_SECONDS] [--set K=V ...]
# rnn, lstm and gru train in three processes at once: one lease, one script (on an H200 the three
# together ran about as fast as one alone: docs/benchmarks.md, "GPU"). Each trains
# RECIPE_DIR/full.yaml plus the --set overrides; at TRAIN_SECONDS (default 330) SIGTERM stops a run
# that has not finished, with a checkpoint; its best checkpoint is then scored on the test split
# (beam 5), and scripts/reproduce.py writes RESULTS.full.md and its plot from the three runs.
# OUT_DIR receives the report, the plot and runs.tgz (each run's logs, metrics and results).
# The data root is $NMT_DATA_ROOT (default ../shared/data).
set -uo pipefail
recipe_dir=${1:?usage: scripts/bench/gpu_cells.sh RECIPE_DIR OUT_DIR [TRAIN_SECONDS] [--set K=V ...]}
out=${2:?usage: scripts/bench/gpu_cells.sh RECIPE_DIR OUT_DIR [TRAIN_SECONDS] [--set K=V ...]}
seconds=${3:-330}
shift $(($# < 3 ? $# : 3))
py=${PYTHON:-python3}
runs=${TMPDIR:-/tmp}/nmt-cells
corpus=$(basename "$recipe_dir")
mkdir -p "$out"
exec > >(tee -a "$out/log.txt") 2>&1
stamp() { echo "== $(date -u +%FT%TZ) $*"; }

stamp "training rnn, lstm and gru side by side for at most ${seconds} s: $recipe_dir $*"
rm -rf "$runs"
pids=()
for cell in rnn lstm gru; do
    run=$runs/$corpus-full/$cell
    mkdir -p "$run"
    (
        start=$(date +%s)
        timeout -s TERM "$seconds" $py -m nmt train "$recipe_dir/full.yaml" --set "model.cell=$cell" "$@" \
            --run-dir "$run" > "$runs/$corpus-full/$cell.log" 2>&1
        echo "$cell: nmt train exited with $? after $(($(date +%s) - start)) s"
        if [ ! -f "$run/results.json" ]; then  # stopped by the clock: score its best checkpoint
            $py -m nmt evaluate "$run" --split test --beam-size 5 --json "$run/test.json" \
                && $py -c "import json, sys; json.dump({'test': json.load(open(sys.argv[1]))}, open(sys.argv[2], 'w'))" \
                    "$run/test.json" "$run/results.json"
        fi
        echo "{\"wall_s\": $(($(date +%s) - start)), \"resumed\": false}" > "$run/timing.json"
    ) &
    pids+=($!)
done
wait "${pids[@]}"  # not a bare wait: that would also wait for the tee above
for cell in rnn lstm gru; do tail -n 3 "$runs/$corpus-full/$cell.log"; done

stamp report
$py scripts/reproduce.py "$recipe_dir" --scale full --runs "$runs" --bench-steps 30 "$@"  # the same --set pairs
cp "$recipe_dir/RESULTS.full.md" "$recipe_dir/bleu_by_length.full.png" "$out/" 2>/dev/null
tar -czf "$out/runs.tgz" -C "$runs" --exclude='*.safetensors' --exclude='*.pt' .
stamp done
