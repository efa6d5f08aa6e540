"""`python -m nmt COMMAND ...`: the command-line tools without their console scripts, e.g. under
`accelerate launch -m nmt train RECIPE.yaml`, which runs a module in every process (torchrun
cannot run the `nmt-train` console script by name).
"""

import sys

from nmt import cli


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = sorted(name.removesuffix("_main") for name in dir(cli) if name.endswith("_main"))
    if not argv or argv[0] not in commands:
        print(f"usage: python -m nmt {{{','.join(commands)}}} ...  (each with --help)", file=sys.stderr)
        return 2
    return getattr(cli, f"{argv[0]}_main")(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
