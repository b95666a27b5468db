"""Scorers of single-projection ptychography estimates (papers 002 and 003).

| scorer | estimate | truth | headline columns |
|---|---|---|---|
| ``thickness`` | ``slice_thickness`` (summed) | ``truth_thickness_A`` | thickness, relative error |
| ``thickness_map`` | ``thickness_map`` | ``truth_thickness_A`` | median relative error |
| ``displacements`` | ``object_states`` | SrTiO3 atoms | d(Sr–TiO), d(O–TiO) in pm (paper 002) |
| ``frc`` | ``object_states`` | ``truth/potential`` | FRC 0.5 of the projected potential (Å) |

The projected potential of an estimate is the mean over object states of the sum over slices
(V Å). A column's position is its peak in that image: the brightest pixel within
``column_radius`` of the true column, refined by a Gaussian fit to its 3 x 3 neighbourhood.
The lattice is periodic, so neighbours across the cell edge are its periodic images.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from experiments.scoring import Estimates, Scorer, ScoringConfig, Truth, register_scorer
from metrics import (
    atom_columns,
    fourier_ring_correlation,
    radial_power_spectrum,
    resolution_at_threshold,
    srtio3_displacements,
    thickness_error_A,
)
from metrics.tracing import refine_peaks

SR, TI, O = 38, 22, 8
BRAGG_FLOOR = 1e-4  # rings below this fraction of the strongest ring's power are left out


def projected(est: Estimates) -> np.ndarray:
    """The estimate's projected potential ``[X, Y]`` (V Å): states averaged, slices summed."""
    return np.asarray(est["object_states"], dtype=np.float64).mean(axis=0).sum(axis=0)


def score_thickness(est: Estimates, truth: Truth, cfg: ScoringConfig) -> dict[str, Any]:
    total = float(np.sum(est["slice_thickness"]))
    err = thickness_error_A(total, float(truth.array("truth/truth_thickness_A").ravel()[0]))
    return {"thickness_A": total, "thickness_error_rel": abs(err["relative"])}


def score_thickness_map(est: Estimates, truth: Truth, cfg: ScoringConfig) -> dict[str, Any]:
    true = float(truth.array("truth/truth_thickness_A").ravel()[0])
    rel = np.abs(np.asarray(est["thickness_map"], dtype=np.float64) / true - 1)
    return {"thickness_map_error_rel": float(np.median(rel))}


def column_species(positions: np.ndarray, numbers: np.ndarray, radius: float,
                   extent: np.ndarray) -> dict[str, np.ndarray]:
    """SrTiO3 [001] columns ``[C, 2]`` Å by kind: ``tio`` (holds Ti), ``sr``, ``o``, in a
    laterally periodic cell of ``extent`` Å."""
    columns = atom_columns(positions, radius, box=extent)
    d = positions[:, None, :2] - columns[None]
    d -= extent * np.round(d / extent)
    nearest = np.argmin((d**2).sum(-1), axis=1)
    kinds = {"tio": TI, "sr": SR, "o": O}
    holds = {k: np.isin(np.arange(len(columns)), nearest[numbers == z]) for k, z in kinds.items()}
    return {"tio": columns[holds["tio"]], "sr": columns[holds["sr"] & ~holds["tio"]],
            "o": columns[holds["o"] & ~holds["tio"] & ~holds["sr"]]}


def measure_columns(image: np.ndarray, columns: np.ndarray, pixel: float, radius: float
                    ) -> np.ndarray:
    """Column positions ``[C, 2]`` Å in the periodic ``image``: the brightest pixel within
    ``radius`` of each reference column, refined by a Gaussian (log-quadratic) fit on its
    3 x 3 neighbourhood (exact for a Gaussian peak; a centre of mass in a window is pulled
    towards the window's pixels)."""
    margin = int(np.ceil(radius / pixel)) + 2
    padded = np.pad(image, margin, mode="wrap")
    centre = np.rint(columns / pixel).astype(np.intp) + margin  # [C, 2]
    span = np.arange(-margin + 1, margin)
    off = np.stack(np.meshgrid(span, span, indexing="ij"), -1).reshape(-1, 2)
    off = off[np.sum((off * pixel) ** 2, axis=1) <= radius**2 + 1e-12]
    cells = centre[:, None, :] + off[None]  # [C, W, 2]
    best = cells[np.arange(len(cells)), np.argmax(padded[cells[..., 0], cells[..., 1]], 1)]
    fitted, _ = refine_peaks(padded, best, "gaussian")
    return (fitted - margin) * pixel


def _images(points: np.ndarray, extent: np.ndarray) -> np.ndarray:
    shifts = np.array([(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)]) * extent
    return (points[None] + shifts[:, None]).reshape(-1, 2)


def score_displacements(est: Estimates, truth: Truth, cfg: ScoringConfig) -> dict[str, Any]:
    """d(Sr–TiO) and d(O–TiO) of the projected potential (paper 002, Figs 2F and 4); nothing
    for a specimen that is not SrTiO3."""
    numbers = truth.array("truth/numbers")
    if not {SR, TI, O} <= set(np.unique(numbers).tolist()):
        return {}
    image, pixel = projected(est), float(np.asarray(est["object_sampling"]).ravel()[0])
    extent = np.asarray(image.shape, dtype=np.float64) * pixel
    kinds = column_species(truth.array("truth/positions"), numbers, cfg.column_radius, extent)
    found = {k: measure_columns(image, c, pixel, cfg.column_radius) for k, c in kinds.items()}
    d = srtio3_displacements(found["tio"], _images(found["sr"], extent),
                             _images(found["o"], extent))
    return {"d_sr_tio_pm": d["d_sr_tio_mean_pm"], "d_o_tio_pm": d["d_o_tio_mean_pm"],
            "d_sr_tio_std_pm": d["d_sr_tio_std_pm"], "d_o_tio_std_pm": d["d_o_tio_std_pm"]}


def score_frc(est: Estimates, truth: Truth, cfg: ScoringConfig) -> dict[str, Any]:
    """FRC (threshold 0.5) of the projected potential against the true one, on the truth's
    voxel grid (skipped when the estimate lies on another grid). A periodic crystal has power
    only on the rings through its reflections; the rings without (true power below
    ``BRAGG_FLOOR`` of the strongest) are left out, or their noise would end the curve."""
    image = projected(est)
    pixel = float(np.asarray(est["object_sampling"]).ravel()[0])
    true = truth.array("truth/potential").sum(axis=0) * truth.voxel_size  # V Å
    if image.shape != true.shape or not np.isclose(pixel, truth.voxel_size):
        return {}
    frc = fourier_ring_correlation(image, true, pixel)
    power = radial_power_spectrum(true, pixel)[1]  # the FRC's rings
    keep = power > BRAGG_FLOOR * power[1:].max()  # a crystal's rings without reflections
    keep[0] = True
    resolution, _ = resolution_at_threshold(frc.frequency[keep], frc.correlation[keep], 0.5)
    return {"frc_resolution_A": float(resolution)}


for _scorer in (
    Scorer("thickness", "slice_thickness", ("truth/truth_thickness_A",), score_thickness,
           ("thickness_A", "thickness_error_rel"), None,
           {"thickness_A": "thickness (Å)", "thickness_error_rel": "thickness error"}),
    Scorer("thickness_map", "thickness_map", ("truth/truth_thickness_A",), score_thickness_map,
           ("thickness_map_error_rel",), None, {"thickness_map_error_rel": "thickness map error"}),
    Scorer("displacements", "object_states", ("truth/positions", "truth/numbers"),
           score_displacements, ("d_sr_tio_pm", "d_o_tio_pm"), None,
           {"d_sr_tio_pm": "d(Sr–TiO) (pm)", "d_o_tio_pm": "d(O–TiO) (pm)"}, rank_by="d_o_tio_pm"),
    Scorer("frc", "object_states", ("truth/potential",), score_frc, ("frc_resolution_A",), None,
           {"frc_resolution_A": "FRC 0.5 (Å)"}),
):
    register_scorer(_scorer)
