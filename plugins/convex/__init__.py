"""Convex training of regularised two-layer ReLU networks (work in progress)."""
