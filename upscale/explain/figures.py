"""Figure scaffolding shared by the site-level explanation plots.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot state), so that
plotting is safe in worker threads and leaves no open figures behind.
"""

from __future__ import annotations


def panels(n_rows: int, n_cols: int, figsize: tuple[float, float]):
    """A constrained-layout figure with a grid of panels.

    Parameters
    ----------
    n_rows, n_cols : int
        Panels down and across.
    figsize : tuple of float
        (width, height) of the whole figure in inches.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure.
    axes : numpy.ndarray
        [n_rows, n_cols] axes (always two-dimensional).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(n_rows, n_cols, squeeze=False)


def lag_ticks(ax, ticks, linthresh: float, linscale: float = 1.0) -> None:
    """A symmetric-log x axis of days with integer ticks: linear up to ``linthresh``, logarithmic beyond.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The panel.
    ticks : sequence of int
        The days to label.
    linthresh, linscale : float
        As matplotlib's ``symlog`` scale.
    """
    ax.set_xscale("symlog", linthresh=linthresh, linscale=linscale)
    ax.set_xticks(ticks, [str(t) for t in ticks])
