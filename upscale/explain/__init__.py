"""Explanations of trained models, out of sample at the sites and tiled over the grid.

Site-level methods (permutation importance, memory effects, integrated gradients over lags,
cell states) take an :class:`~upscale.explain.context.ExplainContext`: the extracted sites and
the cross-validation fold ensembles, each explained only on its own test sites. Gridded
sensitivity maps run through the apply stage's tile wiring.
"""
