#!/usr/bin/env bash
# Installs OpenNMT-py 3.5.1 with the local CPU build of torch 2.13.0 into its own virtual environment
# (default ${XDG_CACHE_HOME:-~/.cache}/nmt-peers/opennmt-3.5.1; $ONMT_VENV overrides). Idempotent:
# a finished install leaves a .ready marker and the script then does nothing.
# OpenNMT-py 3.5.1 declares torch<2.3, which pip would satisfy with a CPU+CUDA torch of several GB;
# it runs on torch 2.13.0 as it is, so it is installed without its declared requirements and those are
# installed beside it with torch pinned (README.md beside this file lists every fix and why).
set -euo pipefail
venv=${ONMT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/nmt-peers/opennmt-3.5.1}
if [ -f "$venv/.ready" ]; then echo "$venv ready"; exit 0; fi
python3 -m venv "$venv"
echo torch==2.13.0 > "$venv/constraints.txt"
"$venv/bin/pip" install -q -c "$venv/constraints.txt" torch==2.13.0
"$venv/bin/pip" install -q --no-deps opennmt-py==3.5.1
# Its requirements except torch and ctranslate2 (only its model converters use that); all of these are
# imported when onmt_train starts. sentencepiece: the harness tokenizes the corpus with our model.
"$venv/bin/pip" install -q -c "$venv/constraints.txt" configargparse pyyaml sacrebleu six flask waitress \
  "pyonmttok>=1.37,<2" tensorboard spacy rapidfuzz pyahocorasick fasttext-wheel sentencepiece
"$venv/bin/python" -c "import onmt, torch; print('opennmt-py', onmt.__version__, 'torch', torch.__version__)"
touch "$venv/.ready"
