"""Differentiable ops, one module per family, mirroring src/cpp/ (see DESIGN.md)."""
