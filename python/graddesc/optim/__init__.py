"""Optimizers (PyTorch's update rules, each parameter group updated by one fused C++ call),
learning-rate schedulers, and (gd) ZerothOrder, gradient descent from loss values alone.

    opt = graddesc.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
"""

from graddesc.optim import lr_scheduler
from graddesc.optim.adagrad import Adagrad
from graddesc.optim.adam import Adam, AdamW
from graddesc.optim.lbfgs import LBFGS
from graddesc.optim.optimizer import Optimizer
from graddesc.optim.rmsprop import RMSprop
from graddesc.optim.sgd import SGD
from graddesc.optim.zeroth_order import ZerothOrder

__all__ = ["LBFGS", "SGD", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop", "ZerothOrder",
           "lr_scheduler"]
