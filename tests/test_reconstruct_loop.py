"""The one optimisation loop: convergence on known truths, groups, divergence, determinism."""

from __future__ import annotations

import math

import pytest
import torch

from reconstruct import (
    DivergenceError,
    GroupSettings,
    MixedProbe,
    MultislicePtychography,
    Propagator,
    SlicedObject,
    amplitude_loss,
    antialias_aperture,
    bandlimit,
    index_batches,
    optimize,
    probe_from_aberrations,
    scan_grid,
)

ENERGY = 200e3


def blobs(n: int, shape: tuple[int, int], seed: int, width: float = 1.2) -> torch.Tensor:
    """A smooth random 'atomic' slice [x, y]: ``n`` Gaussians of ``width`` pixels."""
    g = torch.Generator().manual_seed(seed)
    c = torch.rand(n, 2, generator=g) * torch.tensor(shape)
    x = torch.arange(shape[0])[:, None, None]
    y = torch.arange(shape[1])[None, :, None]
    return torch.exp(-((x - c[:, 0]) ** 2 + (y - c[:, 1]) ** 2) / (2 * width**2)).sum(-1)


def setup(n_slices, sampling, patch, obj, step, n_scan, thickness, defocus, tilt=None, width=1.2):
    potential = torch.stack([blobs(10, obj, k, width) for k in range(n_slices)]) * 300
    probe = probe_from_aberrations(patch, sampling, ENERGY, 0.02, {"defocus": defocus})
    positions = scan_grid((2.4, 2.4), (step, step), (n_scan, n_scan))

    def make(pot: torch.Tensor, tilt_: torch.Tensor | None) -> MultislicePtychography:
        return MultislicePtychography(
            SlicedObject(pot, ENERGY, sampling),
            MixedProbe(probe),
            positions,
            Propagator(patch, sampling, ENERGY, thickness, tilt=tilt_),
            (13, 13),
        )

    truth = make(potential, tilt)
    with torch.no_grad():
        data = truth(torch.arange(len(positions)))
    return potential, make, data


def loss_fn(data):
    return lambda model, idx: amplitude_loss(model(idx), data[idx])


def test_loop_recovers_a_specimen_tilt():
    tilt = torch.tensor([3e-3, -2e-3])
    potential, make, data = setup(8, (0.25, 0.25), (24, 24), (40, 40), 0.75, 6, 2.0, 30.0, tilt)
    model = make(potential, None)  # known object, untilted start
    history = optimize(
        model, loss_fn(data), index_batches(36), {"tilt": GroupSettings(lr=5e-4, lr_decay=0.97)},
        n_iter=100, progress=False,
    )  # fmt: skip
    found = model.propagator.tilt.detach()
    assert history.loss[-1] < 1e-4 * history.loss[0]
    assert torch.all((found - tilt).abs() < 2e-5), found


def test_loop_recovers_a_two_slice_object_with_positivity():
    potential, make, data = setup(2, (0.3, 0.3), (16, 16), (28, 28), 0.6, 6, 1.0, 40.0)
    model = make(torch.zeros_like(potential), None)

    def positivity(m, iteration):
        m.object.potential.clamp_(min=0)

    history = optimize(
        model, loss_fn(data), index_batches(36), {"object": GroupSettings(lr=40.0)},
        n_iter=200, constraints=[positivity], progress=False,
    )  # fmt: skip
    assert history.loss[-1] < 1e-3 * history.loss[0]
    assert float(model.object.potential.detach().min()) >= 0.0
    # Projected potential in the well-illuminated centre, up to the unobservable constant and
    # within the 2/3 antialias bandlimit (frequencies beyond it never reach the data).
    mask = antialias_aperture((28, 28), (0.3, 0.3))
    est = bandlimit(model.object.potential.detach()[0].sum(0), mask).real[10:18, 10:18]
    ref = bandlimit(potential.sum(0), mask).real[10:18, 10:18]
    error = ((est - est.mean()) - (ref - ref.mean())).norm() / (ref - ref.mean()).norm()
    assert error < 0.02, float(error)


def _small_problem():
    potential, make, data = setup(2, (0.3, 0.3), (16, 16), (28, 28), 0.6, 4, 1.0, 40.0)
    return make(torch.zeros_like(potential), None), data


def test_groups_start_late_and_unlisted_groups_stay_frozen():
    model, data = _small_problem()
    probe_before = model.probe.modes_real.detach().clone()
    positions_before = model.positions.detach().clone()
    seen = []

    def record(m, iteration, loss):
        seen.append(m.positions.detach().clone())

    optimize(
        model, loss_fn(data), index_batches(16),
        {"object": GroupSettings(lr=20.0), "positions": GroupSettings(lr=1e-3, start_iter=3)},
        n_iter=5, progress=False, callback=record,
    )  # fmt: skip
    torch.testing.assert_close(seen[2], positions_before, rtol=0, atol=0)
    assert not torch.equal(seen[3], positions_before)
    torch.testing.assert_close(model.probe.modes_real.detach(), probe_before, rtol=0, atol=0)
    assert all(p.requires_grad for p in (model.positions, model.probe.modes_real))
    with pytest.raises(KeyError):
        optimize(model, loss_fn(data), index_batches(16), {"nope": GroupSettings(lr=1.0)}, 1,
                 progress=False)  # fmt: skip


def test_divergence_is_detected():
    model, data = _small_problem()
    with pytest.raises(DivergenceError, match="exceeds"):
        optimize(
            model, loss_fn(data), index_batches(16), {"object": GroupSettings(lr=1e5)},
            n_iter=20, divergence_factor=10.0, progress=False,
        )  # fmt: skip
    bad = data.clone()
    bad[0, 0, 0] = math.nan
    with pytest.raises(DivergenceError, match="nan") as info:
        optimize(model, loss_fn(bad), index_batches(16), {"object": GroupSettings(lr=1.0)}, 3,
                 progress=False)  # fmt: skip
    assert info.value.history.loss == []
    # A step that overflows the parameters is caught by name even when the loss is bounded.
    with pytest.raises(DivergenceError, match="'object' became NaN/inf"):
        optimize(model, loss_fn(data), index_batches(16),
                 {"object": GroupSettings(lr=math.inf, optimizer="sgd")}, 1, progress=False)


def test_seeded_runs_are_deterministic():
    def run(seed):
        model, data = _small_problem()
        history = optimize(
            model, loss_fn(data), index_batches(16, batch_size=5),
            {"object": GroupSettings(lr=20.0), "probe": GroupSettings(lr=1e-3, optimizer="sgd")},
            n_iter=4, seed=seed, progress=False,
        )  # fmt: skip
        return history.loss, model.object.potential.detach()

    loss_a, obj_a = run(3)
    loss_b, obj_b = run(3)
    loss_c, _ = run(4)
    assert loss_a == loss_b
    assert torch.equal(obj_a, obj_b)
    assert loss_a != loss_c  # a different seed shuffles the mini-batches differently


def test_progress_bar_and_history_timing(capsys):
    model, data = _small_problem()
    history = optimize(model, loss_fn(data), index_batches(16), {"object": {"lr": 10.0}}, 2)
    assert len(history.loss) == 2 and history.seconds > 0
    assert "reconstruct" in capsys.readouterr().err


def test_chunked_batches_give_the_same_updates():
    """Gradients accumulated over chunks of a batch equal the whole batch's: the same run."""
    runs = []
    for chunk in (None, 3):
        model, data = _small_problem()
        settings = {"object": GroupSettings(lr=1.0), "probe": GroupSettings(lr=1e-4)}
        hist = optimize(model, loss_fn(data), index_batches(16, batch_size=8), settings, 3,
                        progress=False, chunk_size=chunk)
        runs.append((hist.loss, model.object.potential.detach().clone()))
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-5)
    torch.testing.assert_close(runs[0][1], runs[1][1], rtol=1e-4, atol=1e-4)


def test_line_search_reuses_the_batch_gradient_and_tries_without_backward():
    """Per update: one forward+backward by the loop, then trial points forward only."""
    model, data = _small_problem()
    calls = {"forward": 0, "grad": 0}

    def counting(m, idx):
        calls["forward"] += 1
        calls["grad"] += torch.is_grad_enabled()
        return amplitude_loss(m(idx), data[idx])

    hist = optimize(model, counting, index_batches(16),
                    {"object": GroupSettings(lr=1e-3, optimizer="line_search")}, 4,
                    progress=False)
    assert calls["grad"] == 4  # one gradient per update
    assert calls["forward"] >= 8  # and at least one trial point each
    assert all(b <= a for a, b in zip(hist.loss, hist.loss[1:], strict=False))
