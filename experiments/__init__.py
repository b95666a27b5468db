"""ptychobench experiments: Hydra entry points, result collection, tables and figures."""
