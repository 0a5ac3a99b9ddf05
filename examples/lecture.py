"""The lecture "gradient descent and backpropagation", section by section, in graddesc.

Run: python examples/lecture.py   (a few seconds; writes lecture_graph.dot next to where it runs)
"""

import numpy as np

import graddesc as gd
import graddesc.nn as nn
import graddesc.nn.functional as F
from graddesc.autograd.functional import module_jacobians

gd.manual_seed(0)
rng = np.random.default_rng(0)

# 1. A parametrised model G(x, w): the parameters w are implicit (held by the module).
print("1. parametrised model G(x, w) = w . x + b")
model = nn.Linear(3, 1)
print("   implicit parameters:", [name for name, _ in model.named_parameters()])

# 2. Per-sample loss L(x[p], y[p], w) and average loss L(S, w) over a training set S.
X = gd.tensor(rng.standard_normal((50, 3)))
w_true = np.array([[1.0, -2.0, 0.5]])
Y = gd.tensor(X.numpy() @ w_true.T + 0.1 * rng.standard_normal((50, 1)))
model = model.double()
per_sample = F.mse_loss(model(X), Y, reduction="none")   # L(x[p], y[p], w), one per sample
average = F.mse_loss(model(X), Y)                         # L(S, w) = mean over p
print(f"2. per-sample losses {tuple(per_sample.shape)}, average {average.item():.4f} "
      f"= mean {per_sample.mean().item():.4f}")

# 3. Gradient descent: full batch, stochastic (batch 1) and minibatch.
print("3. gradient descent on the average loss")
for name, batch in (("full-batch GD", 50), ("minibatch SGD", 10), ("SGD", 1)):
    m = nn.Linear(3, 1).double()
    loader = gd.data.DataLoader(gd.data.TensorDataset(X, Y), batch_size=batch, shuffle=True,
                                generator=gd.Generator().manual_seed(0))
    hist = gd.fit(m, nn.MSELoss(), loader, gd.optim.SGD(m.parameters(), lr=0.05),
                  epochs=40 if batch > 1 else 4, progress=False)
    print(f"   {name:14s} {hist.steps:4d} steps -> loss {F.mse_loss(m(X), Y).item():.4f}, "
          f"w = {np.round(m.weight.detach().numpy().ravel(), 2)}")

# 4. The learning rate may be a positive semi-definite matrix: w <- w - eta @ grad.
print("4. a matrix learning rate (preconditioning) on an ill-conditioned quadratic")
H = np.diag([100.0, 1.0])
for label, lr in (("scalar 0.019", 0.019), ("eta = H^-1", gd.tensor(np.linalg.inv(H)))):
    w = gd.tensor([1.0, 1.0], dtype=gd.float64, requires_grad=True)
    opt = gd.optim.SGD([w], lr=lr)
    for _ in range(20):
        opt.zero_grad()
        (0.5 * w @ (gd.tensor(H) @ w)).backward()
        opt.step()
    print(f"   {label:13s} after 20 steps: |w - w*| = {np.linalg.norm(w.detach().numpy()):.2e}")

# 5. Zeroth-order (gradient-free) optimisation: only loss values, as with a black-box cost.
print("5. zeroth-order optimisation (SPSA): loss values only")
w = gd.tensor([2.0, -1.0, 0.5], dtype=gd.float64, requires_grad=True)
zo = gd.optim.ZerothOrder([w], lr=0.05, estimator="spsa",
                          generator=gd.Generator().manual_seed(0))
for _ in range(300):
    with gd.no_grad():
        zo.step(lambda: (w * w).sum())
print(f"   after {zo.num_evaluations} cost evaluations: |w| = "
      f"{np.linalg.norm(w.detach().numpy()):.3f}")

# 6. Backprop through a nonlinearity and through a weighted sum with fan-out.
print("6. backprop rules")
z = gd.tensor([0.5, -1.0, 2.0], dtype=gd.float64, requires_grad=True)
y = gd.tanh(z)                            # y = h(z):  dC/dz = dC/dy * h'(z)
C = (y * y).sum()
C.backward()
expect = 2 * np.tanh(z.detach().numpy()) * (1 - np.tanh(z.detach().numpy()) ** 2)
print(f"   nonlinearity: dC/dz = {np.round(z.grad.numpy(), 4)} (rule gives {np.round(expect, 4)})")
W = gd.tensor(rng.standard_normal((2, 3)), requires_grad=True)
zz = gd.tensor(rng.standard_normal(3), requires_grad=True)
s = W @ zz                                # s[i] = sum_j w[i, j] z[j]: z fans out to every s[i]
C = (s ** 2).sum()
C.backward()
print("   weighted sum: dC/dz = sum_i w[i, j] dC/ds[i] ->",
      np.allclose(zz.grad.numpy(), W.detach().numpy().T @ (2 * s.detach().numpy())))

# 7. A module's two Jacobians; multiplying them stage by stage from the cost down is backprop.
print("7. module Jacobians")
net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).double()
x = gd.tensor(rng.standard_normal(4))
J_x, J_w = module_jacobians(net[0], x)
print(f"   Linear(4, 3): J_x {tuple(J_x.shape)} (= W), J_w['weight'] {tuple(J_w['weight'].shape)}")

# 8. The nearest-neighbour model: argmin over prototype rows, trained by gradient descent on the
#    min-distance cost.
print("8. nearest neighbour")
pts = gd.tensor(np.concatenate([c + 0.2 * rng.standard_normal((30, 2))
                                for c in ([0, 0], [3, 3], [-3, 3])]))
nnm = nn.NearestNeighbor(3, 2).double()
opt = gd.optim.SGD(nnm.parameters(), lr=0.1)
for _ in range(300):
    opt.zero_grad()
    nnm.distances(pts).min(dim=1).values.mean().backward()
    opt.step()
print("   prototypes:", np.round(nnm.weight.detach().numpy(), 1).tolist())
print("   predicted cluster of (2.9, 3.1):", nnm(gd.tensor([2.9, 3.1], dtype=gd.float64)).item())

# 9. The traditional network and its block diagram in the lecture's notation.
print("9. block diagram")
mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
loss = nn.CrossEntropyLoss()(mlp(gd.randn(8, 8, 8)), gd.randint(0, 10, (8,)))
graph = gd.viz.draw_graph(loss, model=mlp)
graph.save("lecture_graph.dot")
print("   wrote lecture_graph.dot (render: dot -Tsvg lecture_graph.dot)")

# 10. The update written by hand, w <- w - eta dL/dw, as the lecture writes it; gd.compile records
#     the whole step once and replays its kernels, with the bits of running it eagerly.
print("10. the update by hand, eager and compiled")


def by_hand(m):
    def step(x, y):
        m.zero_grad()
        loss = F.mse_loss(m(x), y)
        loss.backward()
        with gd.no_grad():
            for p in m.parameters():
                p -= 0.05 * p.grad
        return loss
    return step


eager_m = nn.Linear(3, 1).double()
comp_m = nn.Linear(3, 1).double()
comp_m.load_state_dict(eager_m.state_dict())
eager_step, comp_step = by_hand(eager_m), gd.compile(by_hand(comp_m))
for _ in range(100):
    le, lc = eager_step(X, Y), comp_step(X, Y)
print(f"   loss {lc.item():.4f}; equal to eager bit for bit: {le.item() == lc.item()}; "
      f"replayed {comp_step.stats['replayed']} of 100 calls")
