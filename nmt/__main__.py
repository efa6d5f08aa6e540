"""`python -m nmt COMMAND ...`: every command-line tool without its console script, e.g. under
`accelerate launch -m nmt train RECIPE.yaml`, which runs a module in every process (torchrun
cannot run the `nmt-train` console script by name).
"""

import importlib
import sys

# command -> "module:function", as pyproject.toml's [project.scripts] lists them (a test checks both agree).
COMMANDS = {
    "train": "nmt.cli.commands:train_main",
    "prepare": "nmt.cli.commands:prepare_main",
    "translate": "nmt.cli.commands:translate_main",
    "evaluate": "nmt.cli.commands:evaluate_main",
    "score": "nmt.cli.tools:score_main",
    "average": "nmt.cli.tools:average_main",
    "shortlist": "nmt.cli.tools:shortlist_main",
    "serve": "nmt.serve.cli:serve_main",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m nmt {{{','.join(COMMANDS)}}} ...  (each with --help)", file=sys.stderr)
        return 2
    module, function = COMMANDS[argv[0]].split(":")
    return getattr(importlib.import_module(module), function)(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
