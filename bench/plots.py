"""The figure set-up every bench plot shares: headless matplotlib, one axes, saved as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def new_axes(width: float = 7.0, height: float = 4.5) -> tuple[Any, Any]:
    """(figure, axes) on the Agg backend, so plots render without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=110)


def save(fig: Any, ax: Any, path: Path, xlabel: str, ylabel: str, legend: str = "best") -> None:
    """Label, grid, legend, then write `path` and free the figure."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc=legend)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
