"""The click-curve plot: mean Dice against clicks per data set."""
from pathlib import Path
from typing import Dict, Optional

def write_click_plot(reports: Dict[str, dict], path) -> Optional[Path]:
    """Dice against clicks, one line per data set and k-click protocol (dashed: clicks only) -> PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    drawn = False
    for i, (name, report) in enumerate(reports.items()):
        for protocol, style in (("kclick", "-"), ("kclick_nomask", "--")):
            curve = report["summary"].get(protocol, {}).get("curve")
            if curve:
                label = f"{name} ({'clicks + previous mask' if protocol == 'kclick' else 'clicks only'})"
                ax.plot([c["clicks"] for c in curve], [c["mean"] for c in curve], style, marker="o",
                        color=f"C{i}", label=label)
                drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("clicks")
    ax.set_ylabel("mean Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path

