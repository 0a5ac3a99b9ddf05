"""graddesc's own additions to PyTorch's API: {qualified name in the API reference: what it is}.

docs/conf.py marks each one in the API reference; docs/check_api.py checks that every name here
exists, so this list cannot go stale.
"""

ADDITIONS = {
    "graddesc.compile": "records a whole step's kernels once and replays them from C++ "
                        "(torch.compile has the name, not this behaviour).",
    "graddesc.fit": "a training loop with history and a progress bar.",
    "graddesc.training.History": "what graddesc.fit returns.",
    "graddesc.autograd.functional.module_jacobians": "a module's Jacobians with respect to its "
                                                     "input and to each parameter.",
    "graddesc.autograd.detect_anomaly": "names the op that produced the first NaN/Inf.",
    "graddesc.nn.NearestNeighbor": "the lecture's nearest-neighbour model.",
    "graddesc.optim.ZerothOrder": "gradient estimates from loss values alone.",
    "graddesc.optim.SGD": "the learning rate may also be a diagonal or a symmetric positive "
                          "semi-definite matrix.",
    "graddesc.data.datasets.digits": "handwritten digits shipped in the package.",
    "graddesc.data.datasets.spirals": "a generated spirals classification set.",
    "graddesc.viz.draw_graph": "block diagrams in the lecture's notation.",
    "graddesc.viz.plot_loss": "loss curves.",
    "graddesc.viz.plot_landscape": "2-d loss landscapes with trajectories.",
}
