"""Lecture tools for looking at learning: block diagrams of computation graphs in the lecture's
notation (draw_graph) and matplotlib plots of losses and loss landscapes with trajectories."""

from graddesc.viz.graph import Graph, draw_graph
from graddesc.viz.plots import plot_landscape, plot_loss

__all__ = ["Graph", "draw_graph", "plot_landscape", "plot_loss"]
