"""Issue 16: PyTorch scripts that run on graddesc with only their imports changed.

Each script below is stored once, as PyTorch code. The test runs it with torch, then with its
import lines rewritten (`import torch` -> `import graddesc as torch`, and so on), and compares
what both print: the words must be equal and every number within 1e-3 (absolute, or relative
for large values). Initial weights come from a seeded NumPy generator inside the script, and the
data too, so both libraries start from the same state. Where a script draws random numbers from
the library itself (dropout masks, random_split, shuffling), it prints only what does not depend
on that stream: the result of a converged fit, an accuracy, sizes.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

_IMPORTS = [
    ("import torch.nn.functional as F", "import graddesc.nn.functional as F"),
    ("import torch.nn as nn", "import graddesc.nn as nn"),
    ("from torch.utils.data import", "from graddesc.utils.data import"),
    ("from torch import nn", "from graddesc import nn"),
    ("from torch import optim", "from graddesc import optim"),
    ("from safetensors.torch import", "from graddesc.safetensors import"),
    ("import torch", "import graddesc as torch"),
]


def _port(src: str) -> str:
    """The script with its torch imports replaced by graddesc ones (import lines only)."""
    out = []
    for line in src.splitlines():
        stripped = line.strip()
        for old, new in _IMPORTS:
            if stripped.startswith(old):
                line = line.replace(old, new, 1)
                break
        out.append(line)
    ported = "\n".join(out)
    assert "torch" not in "".join(ln for ln in out if ln.strip().startswith(("import", "from"))
                                  and "graddesc" not in ln), "an import was not rewritten"
    return ported


def _run(src: str) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(src, "<port>", "exec"), {"__name__": "__port__"})  # noqa: S102
    return buf.getvalue()


_NUM = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|nan|inf")


def _compare(ref: str, got: str) -> None:
    got = got.replace("graddesc.", "torch.")  # reprs name the library: graddesc.float64
    assert _NUM.sub("#", ref) == _NUM.sub("#", got), f"text differs:\n{ref}\n---\n{got}"
    a = [float(v) for v in _NUM.findall(ref)]
    b = [float(v) for v in _NUM.findall(got)]
    assert a, "the script printed no numbers"
    np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-3, err_msg=f"\n{ref}\n---\n{got}")


SCRIPTS: dict[str, str] = {}

# (a) MLP regression: TensorDataset, DataLoader, Adam
SCRIPTS["mlp_regression"] = '''
import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

rng = np.random.default_rng(0)
X = rng.uniform(-2, 2, size=(128, 3)).astype(np.float32)
y = (np.sin(X[:, :1]) + 0.5 * X[:, 1:2] * X[:, 2:3]).astype(np.float32)

model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.tensor(rng.uniform(-0.5, 0.5, size=tuple(p.shape)), dtype=torch.float32))

loader = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(y)), batch_size=16)
opt = torch.optim.Adam(model.parameters(), lr=0.01)
loss_fn = nn.MSELoss()
for epoch in range(20):
    total = 0.0
    for xb, yb in loader:
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        total += loss.item() * len(xb)
    if epoch % 5 == 4:
        print(f"epoch {epoch + 1}: loss {total / len(loader.dataset):.5f}")
print("batches per epoch", len(loader))
'''

# (b) classifier: device idiom, .to(device), Dropout, weight decay, StepLR, clipping,
# inference_mode. The dropout masks come from each library's own generator, so the script
# prints what does not depend on them: the loss before training, and the accuracy after it.
SCRIPTS["classifier_device"] = '''
import numpy as np
import torch
import torch.nn as nn

torch.manual_seed(0)
torch.cuda.manual_seed_all(0)
torch.backends.cudnn.deterministic = True
torch.backends.cudnn.benchmark = False
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
print("device:", device, device.type)

rng = np.random.default_rng(1)
centers = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
labels = rng.integers(0, 3, size=300)
X = (centers[labels] + 0.4 * rng.standard_normal((300, 2))).astype(np.float32)
X_t = torch.tensor(X).to(device)
y_t = torch.tensor(labels).to(device)

model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 3)).to(device)
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.tensor(rng.uniform(-0.4, 0.4, size=tuple(p.shape)), dtype=torch.float32))
loss_fn = nn.CrossEntropyLoss()
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=20, gamma=0.5)

model.eval()
with torch.inference_mode():
    print(f"initial loss {loss_fn(model(X_t), y_t).item():.5f}")
model.train()
for epoch in range(60):
    opt.zero_grad()
    loss = loss_fn(model(X_t), y_t)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    opt.step()
    sched.step()
print("lr", sched.get_last_lr()[0])
model.eval()
with torch.inference_mode():
    pred = model(X_t).argmax(dim=1)
    acc = (pred == y_t).float().mean().item()
print(f"accuracy {acc:.2f}")
'''

# (c) custom Dataset, random_split, AdamW. The split is drawn from each library's generator;
# the targets are an exact linear function, so every split fits the same weights.
SCRIPTS["custom_dataset_split"] = '''
import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, random_split

class Points(Dataset):
    def __init__(self, n):
        rng = np.random.default_rng(2)
        self.x = rng.standard_normal((n, 4)).astype(np.float32)
        self.y = (self.x @ np.array([[1.5], [-2.0], [0.5], [0.0]]) + 0.25).astype(np.float32)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return torch.tensor(self.x[i]), torch.tensor(self.y[i])

ds = Points(200)
train, val = random_split(ds, [0.75, 0.25], generator=torch.Generator().manual_seed(0))
print("sizes", len(train), len(val))
train_loader = DataLoader(train, batch_size=len(train))
val_loader = DataLoader(val, batch_size=len(val))

model = nn.Linear(4, 1)
with torch.no_grad():
    model.weight.zero_()
    model.bias.zero_()
opt = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.0)
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=150, gamma=0.1)
for step in range(600):
    for xb, yb in train_loader:
        opt.zero_grad()
        nn.functional.mse_loss(model(xb), yb).backward()
        opt.step()
    sched.step()
with torch.no_grad():
    for xb, yb in val_loader:
        print(f"val loss {nn.functional.mse_loss(model(xb), yb).item():.4f}")
print("weight", [round(v, 3) for v in model.weight.detach().numpy().ravel().tolist()])
print("bias", round(model.bias.item(), 3))
'''

# (d) hand-written gradient descent with Tensor.norm as the stopping rule
SCRIPTS["gd_norm"] = '''
import numpy as np
import torch

rng = np.random.default_rng(3)
A = torch.tensor(rng.standard_normal((50, 3)), dtype=torch.float64)
b = torch.tensor(rng.standard_normal(50), dtype=torch.float64)
w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
lr = 0.05
for step in range(1000):
    loss = ((A @ w - b) ** 2).mean()
    loss.backward()
    g = w.grad
    if g.norm() < 1e-6:
        break
    with torch.no_grad():
        w -= lr * g
    w.grad.zero_()
print("steps", step, "loss", f"{loss.item():.6f}")
print("w", [f"{v:.4f}" for v in w.detach().tolist()])
print("norms", f"{w.norm().item():.5f}", f"{w.norm(p=1).item():.5f}",
      f"{w.norm(p=float('inf')).item():.5f}")
'''

# logistic regression with BCEWithLogitsLoss, sigmoid, round, accuracy
SCRIPTS["logistic_regression"] = '''
import numpy as np
import torch
import torch.nn as nn

rng = np.random.default_rng(4)
X = torch.tensor(rng.standard_normal((200, 2)), dtype=torch.float32)
y = ((X[:, 0] - 0.5 * X[:, 1]) > 0.2).float().unsqueeze(1)
model = nn.Linear(2, 1)
with torch.no_grad():
    model.weight.copy_(torch.tensor([[0.1, -0.2]]))
    model.bias.fill_(0.0)
opt = torch.optim.SGD(model.parameters(), lr=0.5)
loss_fn = nn.BCEWithLogitsLoss()
for it in range(200):
    opt.zero_grad()
    loss = loss_fn(model(X), y)
    loss.backward()
    opt.step()
    if it % 50 == 0:
        print(f"iter {it} loss {loss.item():.5f}")
with torch.no_grad():
    pred = torch.sigmoid(model(X)).round()
    print("accuracy", (pred == y).float().mean().item())
    print("weights", [f"{v:.4f}" for v in model.weight.flatten().tolist()])
'''

# a custom nn.Module with ModuleDict, ParameterList, SiLU, LogSoftmax, NLLLoss, RMSprop and
# an ExponentialLR schedule; the initial state is loaded with load_state_dict
SCRIPTS["custom_module"] = '''
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleDict({"hidden": nn.Linear(4, 8), "out": nn.Linear(8, 3)})
        self.scales = nn.ParameterList([nn.Parameter(torch.ones(8)), nn.Parameter(torch.ones(3))])
        self.act = nn.SiLU()

    def forward(self, x):
        h = self.act(self.layers["hidden"](x)) * self.scales[0]
        return F.log_softmax(self.layers["out"](h) * self.scales[1], dim=1)

rng = np.random.default_rng(5)
net = Net()
state = {k: torch.tensor(rng.uniform(-0.5, 0.5, size=tuple(v.shape)), dtype=torch.float32)
         for k, v in net.state_dict().items()}
net.load_state_dict(state)
print("parameters", sorted(n for n, _ in net.named_parameters()))
X = torch.tensor(rng.standard_normal((60, 4)), dtype=torch.float32)
y = torch.tensor(rng.integers(0, 3, size=60))
opt = torch.optim.RMSprop(net.parameters(), lr=0.01)
sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
for epoch in range(30):
    opt.zero_grad()
    loss = F.nll_loss(net(X), y)
    loss.backward()
    opt.step()
    sched.step()
print(f"loss {loss.item():.5f}")
print("one-hot sum", F.one_hot(y, num_classes=3).sum(dim=0).tolist())
'''

# tensor manipulation: sort, topk, gather, scatter_add, masked_fill, cumsum, repeat, flip
SCRIPTS["tensor_ops"] = '''
import numpy as np
import torch

rng = np.random.default_rng(6)
x = torch.tensor(rng.standard_normal((4, 5)), dtype=torch.float32)
vals, idx = x.sort(dim=1, descending=True)
print("sorted", [f"{v:.4f}" for v in vals[0].tolist()], idx[0].tolist())
top = x.topk(2, dim=1)
print("topk", [f"{v:.4f}" for v in top.values.flatten().tolist()], top.indices.tolist())
print("argsort", x[:, 0].argsort().tolist())
g = x.gather(1, torch.tensor([[0], [1], [2], [3]]))
print("gather", [f"{v:.4f}" for v in g.flatten().tolist()])
acc = torch.zeros(3).scatter_add(0, torch.tensor([0, 1, 0, 2, 1]), torch.ones(5))
print("scatter_add", acc.tolist())
m = x.masked_fill(x < 0, 0.0)
print("masked", f"{m.sum().item():.4f}")
print("cumsum", [f"{v:.4f}" for v in x[0].cumsum(0).tolist()])
print("repeat", torch.arange(3).repeat(2).tolist(), "flip", torch.arange(4).flip(0).tolist())
print("index_select", [f"{v:.4f}" for v in x.index_select(0, torch.tensor([3, 0]))[:, 0].tolist()])
print("prod", f"{x[0].prod().item():.5f}", "all", bool((x > -10).all()), "any", bool((x > 5).any()))
print("round", x[0].mul(10).round().tolist(), x[0].floor().tolist(), x[0].ceil().tolist())
print("unbind", len(x.unbind(1)), "new", x.new_zeros(2, 2).tolist(), x.new_full((2,), 7.0).tolist())
'''

# differentiating through the new ops: gradients of norm, sort, gather, cumsum, prod, sin
SCRIPTS["new_op_gradients"] = '''
import numpy as np
import torch

rng = np.random.default_rng(7)
x = torch.tensor(rng.uniform(0.5, 1.5, size=(3, 4)), dtype=torch.float64, requires_grad=True)
y = (x.norm(dim=1).sum() + x.sort(dim=1).values[:, -1].sum() + x.cumsum(1).square().sum()
     + x.prod(dim=0).sum() + x.sin().cos().sum()
     + x.gather(1, torch.tensor([[3], [0], [1]])).sum() + x.norm(p=1) + x.norm(p="fro"))
y.backward()
print(f"y {y.item():.6f}")
print("grad", [f"{v:.6f}" for v in x.grad.flatten().tolist()])
'''

# losses: HuberLoss, SmoothL1Loss, KLDivLoss(batchmean) on a fixed model
SCRIPTS["robust_losses"] = '''
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

rng = np.random.default_rng(8)
X = torch.tensor(rng.standard_normal((40, 3)), dtype=torch.float32)
y = torch.tensor(rng.standard_normal((40, 1)) * 3, dtype=torch.float32)
for loss_fn in (nn.HuberLoss(delta=0.5), nn.SmoothL1Loss(beta=2.0), nn.MSELoss()):
    model = nn.Linear(3, 1)
    with torch.no_grad():
        model.weight.fill_(0.1)
        model.bias.fill_(0.0)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(50):
        opt.zero_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        opt.step()
    print(type(loss_fn).__name__, f"{loss.item():.5f}")
p = F.log_softmax(torch.tensor(rng.standard_normal((5, 4)), dtype=torch.float32), dim=1)
q = F.softmax(torch.tensor(rng.standard_normal((5, 4)), dtype=torch.float32), dim=1)
print("kl", f"{nn.KLDivLoss(reduction='batchmean')(p, q).item():.5f}",
      f"{F.kl_div(p, q.log(), reduction='sum', log_target=True).item():.5f}")
print("normalize", [f"{v:.4f}" for v in F.normalize(q, dim=1)[0].tolist()])
'''

# NumPy interop: as_tensor keeps float64, ndarray operands, np.asarray, from_numpy
SCRIPTS["numpy_interop"] = '''
import numpy as np
import torch

a = np.linspace(0, 1, 5)
t = torch.as_tensor(a)
print("dtype", t.dtype, "shape", tuple(t.shape))
s = torch.ones(5) + a
print("sum dtype", s.dtype, [f"{v:.3f}" for v in s.tolist()])
r = torch.ones(5, dtype=torch.float64) * a
print("product", type(r).__name__, [f"{v:.3f}" for v in r.tolist()])
shared = torch.from_numpy(a)
a[0] = 9.0
print("shared", shared[0].item(), "back", np.asarray(t * 2).sum())
print("like", torch.zeros_like(t).dtype, t.new_ones(2).dtype, t.type_as(torch.ones(1)).dtype)
'''

# mini-batch SGD with a custom collate_fn, a BatchSampler and a WeightedRandomSampler whose
# weights pick only one sample (so the draw is the same in both libraries)
SCRIPTS["samplers"] = '''
import numpy as np
import torch
from torch.utils.data import (BatchSampler, ConcatDataset, DataLoader, SequentialSampler,
                              Subset, TensorDataset, WeightedRandomSampler)

X = torch.arange(20, dtype=torch.float32).reshape(10, 2)
y = torch.arange(10)
ds = ConcatDataset([TensorDataset(X, y), TensorDataset(X[:4] * -1, y[:4])])
print("len", len(ds), "item", ds[11][0].tolist(), ds[11][1].item())
bs = BatchSampler(SequentialSampler(range(7)), batch_size=3, drop_last=False)
print("batches", list(bs), len(bs))
loader = DataLoader(ds, batch_sampler=bs)
print("first", [b[1].tolist() for b in loader])
one = WeightedRandomSampler([0.0, 0.0, 1.0, 0.0], num_samples=3)
print("weighted", list(one))
sub = Subset(ds, [13, 0])
print("subset", [sub[i][1].item() for i in range(len(sub))])
summed = DataLoader(TensorDataset(X, y), batch_size=4, collate_fn=lambda s: len(s))
print("collate", list(summed))
'''

# the training step under inference_mode as a decorator, no_grad, and requires_grad flags
SCRIPTS["inference_modes"] = '''
import torch
import torch.nn as nn

model = nn.Linear(3, 2)
with torch.no_grad():
    model.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]]))
    model.bias.copy_(torch.tensor([0.5, -0.5]))

@torch.inference_mode()
def predict(x):
    return model(x)

x = torch.tensor([[1.0, 1.0, 1.0]])
out = predict(x)
print("inference", out.tolist(), out.requires_grad, torch.is_grad_enabled())
with torch.inference_mode(False):
    print("enabled", model(x).requires_grad)
loss = model(x).sum()
loss.backward()
print("grad", model.weight.grad.tolist())
'''


# loading with worker processes: the batches (and so the numbers) equal those of the main process
SCRIPTS["worker_loader"] = '''
import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

rng = np.random.default_rng(9)
X = torch.tensor(rng.standard_normal((64, 5)), dtype=torch.float32)
y = X @ torch.tensor(rng.standard_normal((5, 1)), dtype=torch.float32)
loader = DataLoader(TensorDataset(X, y), batch_size=16, num_workers=2, persistent_workers=True)
model = nn.Linear(5, 1)
with torch.no_grad():
    model.weight.zero_()
    model.bias.zero_()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(3):
    for xb, yb in loader:
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(xb), yb)
        loss.backward()
        opt.step()
    print(f"epoch {epoch} loss {loss.item():.5f}")
'''

# a bag-of-words classifier: Embedding with padding, LayerNorm, BatchNorm1d in train and eval
# mode, F.layer_norm / F.batch_norm / F.embedding, and the running statistics in the state_dict
SCRIPTS["norm_layers"] = '''
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

rng = np.random.default_rng(5)
tokens = torch.tensor(rng.integers(1, 20, size=(48, 6)))
tokens[:, 4:] = 0  # padding
labels = torch.tensor(rng.integers(0, 3, size=48))


class BagOfWords(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8, padding_idx=0)
        self.norm = nn.LayerNorm(8)
        self.fc1 = nn.Linear(8, 16)
        self.bn = nn.BatchNorm1d(16, momentum=0.2)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, t):
        h = self.norm(self.emb(t).mean(dim=1))
        return self.fc2(torch.relu(self.bn(self.fc1(h))))


model = BagOfWords()
with torch.no_grad():
    for name, p in model.named_parameters():
        p.copy_(torch.tensor(rng.uniform(-0.5, 0.5, size=tuple(p.shape)), dtype=torch.float32))
    model.emb.weight[0].zero_()
opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.5)
for step in range(30):
    opt.zero_grad()
    loss = F.cross_entropy(model(tokens), labels)
    loss.backward()
    opt.step()
    if step % 10 == 9:
        print(f"step {step + 1}: loss {loss.item():.5f}")
print("padding row grad", model.emb.weight.grad[0].abs().sum().item())
print("batches tracked", int(model.bn.num_batches_tracked))
sd = model.state_dict()
print("running_mean", [round(v, 4) for v in sd["bn.running_mean"][:4].tolist()])
print("running_var", [round(v, 4) for v in sd["bn.running_var"][:4].tolist()])
model.eval()
with torch.no_grad():
    acc = (model(tokens).argmax(dim=1) == labels).float().mean().item()
print(f"train accuracy {acc:.4f}")
x = torch.tensor(rng.standard_normal((5, 4)), dtype=torch.float32)
print("F.layer_norm", F.layer_norm(x, (4,)).sum(dim=1).abs().max().item() < 1e-5)
y = F.batch_norm(x, torch.zeros(4), torch.ones(4), training=True)
print("F.batch_norm", [round(v, 4) for v in y[0].tolist()])
print("F.embedding", F.embedding(torch.tensor([2, 0]), x).tolist()[0][:2])
'''


# saving and loading: torch.save/torch.load of a state dict (graddesc's is an .npz, never a
# pickle, under the same file name), and .safetensors through safetensors.torch's functions
SCRIPTS["safetensors_checkpoints"] = """
import os
import tempfile

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, load_model, save_file, save_model

rng = np.random.default_rng(11)
X = torch.tensor(rng.standard_normal((32, 4)), dtype=torch.float32)
y = torch.tensor(rng.integers(0, 3, size=32))


def make():
    # (no bias before BatchNorm: its gradient is rounding noise, which Adam would amplify)
    model = nn.Sequential(nn.Linear(4, 8, bias=False), nn.BatchNorm1d(8), nn.ReLU(),
                          nn.Linear(8, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.tensor(rng.uniform(-0.5, 0.5, size=tuple(p.shape)),
                                 dtype=torch.float32))
    return model


model = make()
opt = torch.optim.Adam(model.parameters(), lr=0.05)
for step in range(15):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(X), y)
    loss.backward()
    opt.step()
print(f"trained loss {loss.item():.5f}")
model.eval()
with torch.no_grad():
    ref = model(X[:3])
folder = tempfile.mkdtemp()
save_file(model.state_dict(), os.path.join(folder, "model.safetensors"),
          metadata={"format": "pt"})
loaded = load_file(os.path.join(folder, "model.safetensors"))
print("keys", sorted(loaded))
print("num_batches_tracked", int(loaded["1.num_batches_tracked"]), loaded["0.weight"].dtype)
other = make()
other.load_state_dict(loaded)
other.eval()
with torch.no_grad():
    print("same outputs", torch.allclose(other(X[:3]), ref), other(X[:3])[0].tolist())
save_model(model, os.path.join(folder, "again.safetensors"))
third = make()
missing, unexpected = load_model(third, os.path.join(folder, "again.safetensors"))
print("load_model", missing, unexpected)
torch.save(model.state_dict(), os.path.join(folder, "model.pt"))
state = torch.load(os.path.join(folder, "model.pt"), weights_only=True)
print("torch.save/load", sorted(state) == sorted(loaded),
      torch.equal(state["3.bias"], loaded["3.bias"]))
"""

# a small language-model-like classifier: Embedding(padding_idx, scale_grad_by_freq), a causal
# mask from tril, masked_fill, softmax attention with bmm, and % // in the data preparation
SCRIPTS["embedding_attention"] = """
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

rng = np.random.default_rng(21)
tokens = torch.tensor(rng.integers(1, 30, size=(24, 7)))
tokens[tokens % 5 == 0] = 0                          # some padding
labels = (tokens.sum(dim=1) // 7) % 2                  # a parity label
print("labels", labels[:8].tolist(), "padding", int((tokens == 0).sum()))


class TinyAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(30, 8, padding_idx=0, scale_grad_by_freq=True)
        self.q = nn.Linear(8, 8, bias=False)
        self.k = nn.Linear(8, 8, bias=False)
        self.out = nn.Linear(8, 2)

    def forward(self, t):
        h = self.emb(t)
        scores = torch.bmm(self.q(h), self.k(h).transpose(1, 2)) / math.sqrt(8)
        causal = torch.tril(torch.ones(t.shape[1], t.shape[1])).bool()
        scores = scores.masked_fill(~causal, float("-inf"))
        att = F.softmax(scores, dim=-1)
        return self.out(torch.bmm(att, h).mean(dim=1))


model = TinyAttention()
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.tensor(rng.uniform(-0.5, 0.5, size=tuple(p.shape)), dtype=torch.float32))
    model.emb.weight[0].zero_()
opt = torch.optim.SGD(model.parameters(), lr=0.5)
for step in range(40):
    opt.zero_grad()
    loss = F.cross_entropy(model(tokens), labels)
    loss.backward()
    if step == 0:
        g = model.emb.weight.grad
        print("grad rows", g[0].abs().sum().item(), [round(v, 5) for v in g[1].tolist()[:3]])
    opt.step()
    if step % 10 == 9:
        print(f"step {step + 1}: loss {loss.item():.5f}")
x = torch.tensor([0.5, 1e-8, 3.0])
print("log1p", torch.log1p(x).tolist(), "rsqrt", x.rsqrt()[0].item(),
      "isinf", torch.isinf(x / 0).tolist(), torch.allclose(x, x + 1e-9))
"""


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_ports(name: str) -> None:
    src = SCRIPTS[name]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        # PyTorch's own `tensor + ndarray` warns under NumPy 2 (its __array_wrap__ signature);
        # the graddesc run below keeps every warning an error
        warnings.simplefilter("ignore", DeprecationWarning)
        ref = _run(src)
    got = _run(_port(src))
    _compare(ref, got)


# Scripts that start worker processes are run as files (python script.py), as a user runs
# them: graddesc's workers are spawned, and a spawned worker finds the script's Dataset class
# by importing the script again (the `if __name__ == "__main__":` guard keeps it from training).
FILE_SCRIPTS: dict[str, str] = {}

# a stream that shards itself between DataLoader workers with get_worker_info(), read by 2
# workers in turn; a map-style dataset with workers and shuffle=False; a fit on the stream
FILE_SCRIPTS["iterable_workers"] = """
import math

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info


class Rows(IterableDataset):
    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __iter__(self):
        info = get_worker_info()
        start, stop = 0, len(self.X)
        if info is not None:  # each worker reads its own contiguous share
            per = math.ceil(len(self.X) / info.num_workers)
            start, stop = info.id * per, min(len(self.X), (info.id + 1) * per)
        for i in range(start, stop):
            yield self.X[i], self.y[i]


if __name__ == "__main__":
    rng = np.random.default_rng(3)
    X = torch.tensor(rng.standard_normal((40, 3)), dtype=torch.float32)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.25
    loader = DataLoader(Rows(X, y), batch_size=8, num_workers=2)
    print("batches", len(loader), [len(xb) for xb, _ in loader])
    print("first rows", [round(v, 4) for v in next(iter(loader))[0][:, 0].tolist()])
    model = nn.Linear(3, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(4):
        total = 0.0
        for xb, yb in loader:
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
        print(f"epoch {epoch} loss {total / 40:.5f}")
    print("weight", [round(v, 4) for v in model.weight[0].tolist()], round(model.bias.item(), 4))
"""


@pytest.mark.parametrize("name", sorted(FILE_SCRIPTS))
def test_file_script_ports(name: str, tmp_path) -> None:
    import subprocess
    import sys

    src = FILE_SCRIPTS[name]
    out = []
    for label, text in (("torch", src), ("graddesc", _port(src))):
        path = tmp_path / f"{label}_{name}.py"
        path.write_text(text)
        # torch warns when more workers than cores are asked for; graddesc's run keeps every
        # warning an error, as the test suite does
        flags = ["-W", "error"] if label == "graddesc" else []
        proc = subprocess.run([sys.executable, *flags, str(path)], capture_output=True,
                              text=True, timeout=600, cwd=tmp_path)
        assert proc.returncode == 0, f"{label} run failed:\n{proc.stderr}"
        out.append(proc.stdout)
    _compare(*out)


def test_the_corpus_has_at_least_twelve_scripts() -> None:
    assert len(SCRIPTS) + len(FILE_SCRIPTS) >= 12


def test_port_rewrites_only_imports() -> None:
    src = "import torch\nimport torch.nn as nn\nfrom torch.utils.data import DataLoader\n" \
          "x = torch.ones(2)  # torch stays torch\n"
    assert _port(src) == ("import graddesc as torch\nimport graddesc.nn as nn\n"
                          "from graddesc.utils.data import DataLoader\n"
                          "x = torch.ones(2)  # torch stays torch")


def test_compare_catches_a_different_number() -> None:
    with pytest.raises(AssertionError):
        _compare("loss 0.5000", "loss 0.5100")
    with pytest.raises(AssertionError):
        _compare("loss 0.5", "cost 0.5")
