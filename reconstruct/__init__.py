"""ptychobench: shared differentiable physics layer and the one optimisation loop."""
