"""A small convolutional network on the embedded 8x8 digits.

Each image is a 1x8x8 tensor (NCHW, as in PyTorch). Two 3x3 convolutions with ReLU look at
neighbouring pixels, a 2x2 max pool halves the resolution, and a Linear head reads the 32 feature
maps of 4x4. Training is minibatch SGD with momentum; the run prints the test accuracy and the
shapes of a convolution layer's two Jacobians (the lecture's module_jacobians).

Run: python examples/convnet.py   (about ten seconds on two cores)
"""

import graddesc as gd
from graddesc import nn
from graddesc.autograd.functional import module_jacobians


def main(epochs: int = 8) -> None:
    gd.manual_seed(0)
    Xtr, ytr, Xte, yte = gd.data.datasets.digits()
    Xtr, Xte = Xtr.reshape(-1, 1, 8, 8), Xte.reshape(-1, 1, 8, 8)

    model = nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1), nn.ReLU(),   # (N, 16, 8, 8)
        nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(),  # (N, 32, 8, 8)
        nn.MaxPool2d(2),                                         # (N, 32, 4, 4)
        nn.Flatten(),                                            # (N, 512)
        nn.Linear(32 * 4 * 4, 10),
    )
    print(model)
    opt = gd.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = gd.data.DataLoader(gd.data.TensorDataset(Xtr, ytr), batch_size=32, shuffle=True,
                                generator=gd.Generator().manual_seed(0))
    history = gd.fit(model, nn.CrossEntropyLoss(), loader, opt, epochs=epochs, progress=False)
    print(f"final training loss: {history.loss[-1]:.4f}")

    with gd.no_grad():
        pred = model(Xte).argmax(dim=1)
    accuracy = float((pred == yte).float().mean())
    print(f"test accuracy: {accuracy:.3f}")

    # The lecture's two Jacobians of the first convolution at one image: with respect to its
    # input (1x8x8 pixels) and to its weights (16 filters of 1x3x3).
    J_x, J_w = module_jacobians(model[0], Xte[:1])
    print(f"J_x of conv1: {tuple(J_x.shape)}, J_w of conv1.weight: "
          f"{tuple(J_w['weight'].shape)}")


if __name__ == "__main__":
    main()
