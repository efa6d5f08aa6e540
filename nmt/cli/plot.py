"""Pictures: attention heatmaps and BLEU by sentence length (matplotlib, an optional extra)."""

from __future__ import annotations

from pathlib import Path

from nmt.errors import NmtError


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise NmtError("plotting needs matplotlib: pip install 'nmt[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_attention(weights, src_pieces: list[str], out_pieces: list[str], path: Path, title: str = "") -> None:
    """Heatmap of attention weights (outputs x source pieces) written to `path` as PNG."""
    plt = _pyplot()
    rows, cols = len(out_pieces), len(src_pieces)
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * cols + 1.5), max(3, 0.35 * rows + 1.5)))
    ax.imshow(weights[:rows, :cols], cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(cols), src_pieces, rotation=90, fontsize=8)
    ax.set_yticks(range(rows), out_pieces, fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_bleu_by_length(series: dict[str, list[float | None]], buckets: list[str], path: Path,
                        title: str) -> None:
    """One line per model: BLEU against source-length bucket (Bahdanau et al. 2015, Figure 2 style)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in series.items():
        points = [(i, v) for i, v in enumerate(values) if v is not None]
        ax.plot([i for i, _ in points], [v for _, v in points], marker="o", label=name)
    ax.set_xticks(range(len(buckets)), buckets)
    ax.set_xlabel("source sentence length (words)")
    ax.set_ylabel("BLEU")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
