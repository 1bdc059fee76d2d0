"""The figure scaffolding of the explanation plots."""

from __future__ import annotations

from upscale.explain.figures import lag_ticks, panels


def test_panels_are_a_two_dimensional_grid_of_the_given_size():
    fig, axes = panels(1, 3, (6.0, 2.0))
    assert axes.shape == (1, 3)
    assert tuple(fig.get_size_inches()) == (6.0, 2.0)
    assert fig.get_layout_engine() is not None
    _, axes = panels(2, 1, (4.0, 4.0))
    assert axes.shape == (2, 1)


def test_lag_ticks_label_the_days_on_a_symlog_axis():
    _, axes = panels(1, 1, (3.0, 3.0))
    ax = axes[0, 0]
    lag_ticks(ax, [0, 1, 7, 30], linthresh=7)
    assert ax.get_xscale() == "symlog"
    assert ax.xaxis.get_transform().linthresh == 7
    assert list(ax.get_xticks()) == [0, 1, 7, 30]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "7", "30"]
