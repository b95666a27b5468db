"""ptychobench.simulate: ASE model builders, abTEM tilt-series simulation, dataset store and cache.

Public entry points:

- :func:`simulate.models.build_model` builds an ASE ``Atoms`` phantom from a sample config.
- :func:`simulate.tiltseries.simulate_tilt_series` runs abTEM on it.
- :func:`simulate.store.get_dataset` returns a cached, verified :class:`simulate.store.Dataset`.
- :func:`simulate.noise.apply_dose` draws Poisson counts at load time.
"""
