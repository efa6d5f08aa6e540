"""The command-line tools: thin entry points over the library, their flags and line input and output.

    commands.py  nmt-train, nmt-prepare, nmt-translate, nmt-evaluate
    tools.py     nmt-average, nmt-score
    common.py    what every command shares: one-line user errors and exit statuses, quiet libraries
    flags.py     flags generated from a config dataclass and checked by its rules
    text_io.py   input read in chunks of lines, output written whole or not at all
    plot.py      attention heatmaps (--plot-attention)

`nmt-serve` is `nmt/serve/cli.py`; `python -m nmt COMMAND` runs any of them.
"""
