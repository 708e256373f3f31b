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


def test_layer_density_of_a_vit_is_a_heat_map_with_a_row_per_layer(tmp_path):
    """timm's ViT-Tiny (random weights, built offline): 50 prunable layers, too many for lines and a legend."""
    timm = pytest.importorskip("timm")
    import torch

    from lt_lightning.masks import Masks
    from lt_lightning.pruning import ScoreContext
    from lt_lightning.pruning.spec import PruningSpec

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    spec = PruningSpec()
    names, _ = spec.resolve(vit)
    assert len(names) == 50
    history, masks = [], Masks.dense(vit, names)
    for r in range(5):
        if r:
            masks = spec.prune(ScoreContext(vit, masks), 0.6 ** r)
            masks.apply_(vit)
        history.append({"round": r, "density": masks.density(), "layer_density": masks.layer_densities(),
                        "final": {"val_acc": 0.5}, "best": {}, "mask_overlap": None, "distance_from_rewind": None})
    fig = plot_layer_density(history)
    ax, colorbar = fig.axes
    assert not [line for line in ax.get_lines() if not line.get_label().startswith("_")]  # no line per layer
    assert ax.get_legend() is None and fig.legends == []
    (image,) = ax.get_images()
    assert image.get_array().shape == (51, 5)  # all prunable weights, then one row per layer; one column per round
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["all prunable weights", *names] and labels[1] == "patch_embed.proj.weight"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2", "3", "4"] and ax.get_xlabel() == "round"
    assert image.get_array()[0].tolist() == pytest.approx([h["density"] for h in history])
    assert image.get_array()[1 + names.index("head.weight")][-1] == pytest.approx(history[-1]["layer_density"]["head.weight"])
    assert "log scale" in colorbar.get_ylabel() and image.norm.vmax == 1.0
    assert fig.get_size_inches()[1] > 51 * 0.1  # a readable row per layer
    # A few layers keep their lines.
    assert len(plot_layer_density(imp_history()).axes[0].get_lines()) == 3
    # What lt-lightning report writes: the heat map as layer_density.png.
    assert str(tmp_path / "layer_density.png") in write_plots(history, str(tmp_path))
    with open(tmp_path / "layer_density.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
