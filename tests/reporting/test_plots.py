import pytest

pytest.importorskip("matplotlib")
from lt_lightning.reporting.plots import plot_accuracy, plot_layer_density, plot_mask_overlap, write_plots


def imp_history(rounds=6, fraction=0.5):
    """A history shaped as IMPCallback writes it: nested masks, so each overlap is the ratio of densities."""
    history = []
    for r in range(rounds + 1):
        density = (1 - fraction) ** r
        history.append({
            "round": r, "density": density,
            "layer_density": {"hidden.weight": density ** 1.2, "out.weight": density ** 0.5},
            "final": {"val_acc": 0.9 - 0.01 * r * r, "val_loss": 0.3 + 0.05 * r},
            "best": {"val_acc": 0.92 - 0.01 * r * r, "val_loss": 0.28 + 0.05 * r},
            "monitor": "val_loss", "best_step": 40 - r,
            "mask_overlap": None if r == 0 else 1 - fraction,
            "distance_from_rewind": 0.5 + 0.1 * r, "wall_time_s": 1.0, "ticket": None,
        })
    return history


def test_accuracy_plot_reads_from_100_percent_down_on_a_log_axis():
    history = imp_history()
    fig = plot_accuracy(history)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    left, right = ax.get_xlim()
    assert left > 100 and right < 100 * history[-1]["density"]  # reversed, every round inside
    assert [t.get_text() for t in ax.get_xticklabels()] == ["100", "50", "25", "12.5", "6.25", "3.12", "1.56"]
    assert ax.get_ylabel() == "val_acc" and "weights remaining" in ax.get_xlabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "final val_acc", "best val_acc (early-stopping step)", "round 0 (dense)"]
    final = ax.get_lines()[0]
    assert list(final.get_xdata()) == pytest.approx([100 * h["density"] for h in history])
    assert list(final.get_ydata()) == pytest.approx([h["final"]["val_acc"] for h in history])
    assert plot_accuracy(history, "val_loss").axes[0].get_ylabel() == "val_loss"


def test_accuracy_plot_thins_ticks_of_long_runs():
    fig = plot_accuracy(imp_history(rounds=30, fraction=0.2))
    assert 6 <= len(fig.axes[0].get_xticklabels()) <= 12


def test_layer_density_plot_has_a_line_per_layer_and_the_global_density():
    history = imp_history()
    (ax,) = plot_layer_density(history).axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"hidden.weight", "out.weight", "all prunable weights"}
    assert list(lines["out.weight"].get_ydata()) == pytest.approx([h["layer_density"]["out.weight"] for h in history])
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "round"


def test_mask_overlap_plot_starts_at_round_one():
    history = imp_history()
    top, bottom = plot_mask_overlap(history).axes
    overlap = next(line for line in top.get_lines() if line.get_label() == "mask overlap (IoU)")
    assert list(overlap.get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert list(overlap.get_ydata()) == pytest.approx([0.5] * 6)
    assert list(bottom.get_lines()[0].get_ydata()) == pytest.approx([h["distance_from_rewind"] for h in history])


def test_write_plots_writes_pngs(tmp_path):
    paths = write_plots(imp_history(), str(tmp_path / "report"))
    assert [p.rsplit("/", 1)[1] for p in paths] == [
        "accuracy_vs_weights_remaining.png", "layer_density.png", "mask_overlap.png"]
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
