"""Text <-> SentencePiece pieces for the OpenNMT-py harness, with the same model as ours.

    python spm_pieces.py encode MODEL IN OUT   # one line of space-separated pieces per sentence
    python spm_pieces.py decode MODEL IN OUT   # pieces back to detokenized text
"""

import sys

import sentencepiece as spm


def main() -> None:
    mode, model, src, dst = sys.argv[1:5]
    sp = spm.SentencePieceProcessor(model_file=model)
    lines = open(src, encoding="utf-8").read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if mode == "encode":
        out = [" ".join(pieces) for pieces in sp.encode(lines, out_type=str)]
    elif mode == "decode":
        out = [sp.decode_pieces(line.split()) for line in lines]
    else:
        sys.exit(f"unknown mode {mode!r}: encode or decode")
    with open(dst, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in out)


if __name__ == "__main__":
    main()
