#!/usr/bin/env bash
# run.sh train OUT SPM_MODEL STEPS [BATCH_TOKENS] | run.sh test OUT [BEAM]
# (data: $DATA, default ../shared/data/multi30k beside the repository; venv: $ONMT_VENV, as setup.sh;
#  $ONMT_GPU: a CUDA device index to train and decode on, default -1 = the CPU)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${ONMT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/nmt-peers/opennmt-3.5.1}
data=${DATA:-$(cd "$here/../../../../../shared/data/multi30k" && pwd)}
usage="usage: run.sh train OUT SPM_MODEL STEPS [BATCH_TOKENS] | run.sh test OUT [BEAM]"
[ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
[ -x "$venv/bin/onmt_train" ] || { echo "no OpenNMT-py in $venv: run $here/setup.sh first" >&2; exit 2; }
mode=$1 out=$(mkdir -p "$2" && cd "$2" && pwd)
py="$venv/bin/python"
gpu=${ONMT_GPU:--1}
now() { date +%s.%N; }
failed() { echo "$1 failed; its last lines ($2):" >&2; tail -20 "$2" >&2; exit 1; }
case $mode in
  train)
    [ $# -ge 4 ] || { echo "$usage" >&2; exit 2; }
    spm=$(readlink -f "$3") steps=$4 batch=${5:-1120}  # 1120: as many updates per epoch as ours on Multi30k
    start=$(now)
    mkdir -p "$out/tok" "$out/model"
    for f in train val test_2016_flickr; do
      for l in de en; do "$py" "$here/spm_pieces.py" encode "$spm" "$data/$f.$l" "$out/tok/$f.$l"; done
    done
    cp "$spm" "$out/spm.model"
    sed -e "s|@OUT@|$out|" -e "s|@STEPS@|$steps|" -e "s|@BATCH@|$batch|" -e "s|@REPORT@|$((steps < 50 ? steps : 50))|" \
        -e "s|@BUCKET@|$(wc -l < "$out/tok/train.de")|" "$here/config.template.yaml" > "$out/config.yaml"
    if [ "$gpu" -ge 0 ]; then printf 'world_size: 1\ngpu_ranks: [%s]\n' "$gpu" >> "$out/config.yaml"; fi
    "$venv/bin/onmt_build_vocab" -config "$out/config.yaml" -n_sample -1 > "$out/build_vocab.stdout" 2>&1 ||
      failed onmt_build_vocab "$out/build_vocab.stdout"
    "$venv/bin/onmt_train" -config "$out/config.yaml" > "$out/train.stdout" 2>&1 || failed onmt_train "$out/train.stdout"
    end=$(now)
    grep -E "number of parameters|tok/s" "$out/train.stdout" | tail -3
    echo "wall_s $(python3 -c "print(round($end - $start, 1))")" ;;
  test)
    beam=${3:-5}
    model=$(ls -t "$out"/model/model_step_*.pt | head -1)
    start=$(now)
    # Its checkpoints pickle an argparse.Namespace, which torch >= 2.6 refuses to load by default;
    # this lets it load the file that the train step above wrote, and nothing else is loaded.
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 "$venv/bin/onmt_translate" -model "$model" \
      -src "$out/tok/test_2016_flickr.de" -output "$out/hyp.beam$beam.pieces" -gpu "$gpu" \
      -beam_size "$beam" -batch_size 64 -batch_type sents -length_penalty wu -alpha 1.0 \
      -max_length_ratio 1.5 -min_length 1 -report_time > "$out/test.beam$beam.log" 2>&1 || failed onmt_translate "$out/test.beam$beam.log"
    end=$(now)
    "$py" "$here/spm_pieces.py" decode "$out/spm.model" "$out/hyp.beam$beam.pieces" "$out/hyp.beam$beam"
    grep -E "Total translation time" "$out/test.beam$beam.log" | tail -1
    echo "decode_wall_s $(python3 -c "print(round($end - $start, 1))") (includes model load)" ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
