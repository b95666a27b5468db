"""abTEM simulation of a 4D-STEM (and optional ADF) tilt series with its ground truth.

For tilt j the model's atoms are rotated about the cell centre by ``R_j`` (simulate.geometry,
the same matrix the reconstructions use) and shifted by ``tau_j`` in the image plane; then each
frozen-phonon configuration (or MD snapshot) is simulated by abTEM's multislice and the
intensities are averaged. Intensities are per incident electron (each probe has unit norm).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import abtem
import dask
import dask.array as da
import numpy as np
from ase import Atoms
from numpy.typing import NDArray
from scipy import ndimage

from simulate.config import MicroscopeConfig, ScanConfig, SimulationConfig, TiltConfig
from simulate.geometry import transform_positions
from simulate.physics import wavelength
from simulate.progress import progress_bar

FloatArray = NDArray[np.float64]


@dataclass
class TiltSeries:
    """A simulated tilt series, its geometry and its truth. Shapes use T tilts, P = sx·sy scan
    positions, N atoms, a detector of kx × ky pixels and a truth grid of nz × nx × ny voxels."""

    diffraction: NDArray[np.float32] | None  # [T, sx, sy, kx, ky], per incident electron
    haadf: NDArray[np.float32] | None  # [T, sx, sy], fraction of the beam on the ADF detector
    euler_deg: FloatArray  # [T, 3] true (phi, theta, psi)
    euler_nominal_deg: FloatArray  # [T, 3] what the experimenter believes
    shifts: FloatArray  # [T, 2] true image-plane shifts (Å)
    positions: FloatArray  # [T, P, 2] true scan positions (Å)
    positions_nominal: FloatArray  # [T, P, 2] nominal scan positions (Å)
    angular_sampling: FloatArray  # [2] mrad per detector pixel
    reciprocal_sampling: FloatArray  # [2] 1/Å per detector pixel
    potential: NDArray[np.float32]  # [nz, nx, ny] ground-truth potential (V)
    voxel_size: float  # Å
    origin: FloatArray  # [3] (x, y, z) in Å of voxel [0, 0, 0]
    extra: dict[str, NDArray] = field(default_factory=dict)  # builder truth, snapshots


def resolve_tilts(cfg: TiltConfig) -> tuple[FloatArray, FloatArray, FloatArray]:
    """True and nominal Euler angles ``[T, 3]`` (degrees) and true shifts ``[T, 2]`` (Å)."""
    if cfg.euler is not None:
        nominal = np.asarray(cfg.euler, dtype=np.float64)
    else:
        thetas = (
            np.asarray(cfg.angles, dtype=np.float64)
            if cfg.angles is not None
            else np.linspace(cfg.range[0], cfg.range[1], cfg.count, endpoint=cfg.endpoint)
        )
        nominal = np.stack([np.zeros_like(thetas), thetas, np.zeros_like(thetas)], axis=1)
    rng = np.random.default_rng([cfg.seed, 1])
    true = nominal + cfg.euler_error * rng.standard_normal(nominal.shape)
    shifts = rng.uniform(-cfg.shift_max, cfg.shift_max, size=(len(nominal), 2))
    return true, nominal, shifts


def scan_grid(cfg: ScanConfig, cell: FloatArray) -> tuple[FloatArray, tuple[int, int]]:
    """Nominal raster ``[P, 2]`` (Å, x-major like abTEM) and its shape ``(sx, sy)``."""
    start = np.asarray(cfg.start if cfg.start is not None else [0.0, 0.0], dtype=np.float64)
    end = np.asarray(cfg.end if cfg.end is not None else cell[:2], dtype=np.float64)
    n = np.floor((end - start) / cfg.step + 1e-9).astype(int)
    xs, ys = (start[i] + cfg.step * np.arange(n[i]) for i in range(2))
    grid = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1).reshape(-1, 2)
    return grid, (int(n[0]), int(n[1]))


def make_probe(m: MicroscopeConfig) -> abtem.Probe:
    """abTEM probe with the config's aperture and aberrations (abTEM's polar convention)."""
    return abtem.Probe(
        energy=m.energy,
        semiangle_cutoff=m.semiangle,
        soft=m.soft_aperture,
        aberrations={"defocus": m.defocus, **dict(m.aberrations)},
    )


def _configurations(
    atoms: Atoms, cfg: SimulationConfig, lab: FloatArray | list[FloatArray], seed: int
) -> abtem.FrozenPhonons | abtem.AtomsEnsemble | Atoms:
    """abTEM ensemble of the tilted model: MD snapshots if given, else frozen phonons."""
    if isinstance(lab, list):
        frames = [atoms.copy() for _ in lab]
        for frame, pos in zip(frames, lab, strict=True):
            frame.positions = pos
        return abtem.AtomsEnsemble(frames)
    tilted = atoms.copy()
    tilted.positions = lab
    ph = cfg.phonons
    if ph.num_configs == 0:
        return tilted
    sigmas = {
        s: float(ph.sigmas.get(s, ph.default_sigma)) for s in set(atoms.get_chemical_symbols())
    }
    return abtem.FrozenPhonons(tilted, num_configs=ph.num_configs, sigmas=sigmas, seed=seed)


def _scans(cfg: SimulationConfig) -> list[tuple[MicroscopeConfig, list]]:
    """(microscope, detectors) of each abTEM scan: one, or two when the ADF series has its own
    ``detector.adf_defocus``."""
    d, m = cfg.detector, cfg.microscope
    pixelated = [abtem.PixelatedDetector(max_angle=d.max_angle)] if d.pixelated else []
    annular = [abtem.AnnularDetector(d.adf_inner, d.adf_outer)] if d.adf else []
    if annular and d.adf_defocus is not None and d.adf_defocus != m.defocus:
        adf_scope = dataclasses.replace(m, defocus=d.adf_defocus)
        return [s for s in ((m, pixelated), (adf_scope, annular)) if s[1]]
    return [(m, pixelated + annular)]


def _scan(potential: abtem.Potential, cfg: SimulationConfig, positions: FloatArray) -> list:
    """abTEM's multislice or PRISM over ``positions``: the lazy measurements (dask arrays),
    patterns first, then ADF."""
    return [r for m, dets in _scans(cfg) for r in _scan_with(potential, cfg, positions, m, dets)]


def _scan_with(potential: abtem.Potential, cfg: SimulationConfig, positions: FloatArray,
               m: MicroscopeConfig, detectors: list) -> list:
    """One abTEM scan with microscope ``m`` and ``detectors`` (lazy)."""
    scan = abtem.CustomScan(positions)
    if cfg.method.name == "prism":
        smatrix = abtem.SMatrix(
            semiangle_cutoff=m.semiangle,
            energy=m.energy,
            potential=potential,
            interpolation=cfg.method.prism_interpolation,
            downsample=False,
        )
        ctf = abtem.CTF(
            semiangle_cutoff=m.semiangle,
            energy=m.energy,
            soft=m.soft_aperture,
            aberration_coefficients={"C10": -m.defocus, **dict(m.aberrations)},
        )
        result = smatrix.scan(scan=scan, detectors=detectors, ctf=ctf)
    else:
        result = make_probe(m).scan(potential, scan=scan, detectors=detectors)
    return result if isinstance(result, list) else [result]


def lazy_tilt(
    atoms: Atoms,
    cfg: SimulationConfig,
    euler: FloatArray,
    shift: FloatArray,
    positions: FloatArray,
    seed: int,
) -> tuple[da.Array | None, da.Array | None, FloatArray]:
    """One tilt as dask arrays (abTEM's graph over the frozen-phonon configurations, reduced
    to their mean): diffraction ``[P, kx, ky]`` (or None), ADF ``[P]`` (or None), float32,
    and the angular sampling ``[2]`` in mrad of the patterns."""
    centre = np.diag(atoms.cell.array) / 2
    snaps = atoms.info.get("snapshots")
    lab = (
        [transform_positions(s, euler, centre, shift) for s in snaps]
        if snaps is not None
        else transform_positions(atoms.positions, euler, centre, shift)
    )
    p = cfg.potential
    potential = abtem.Potential(
        _configurations(atoms, cfg, lab, seed),
        sampling=p.sampling,
        slice_thickness=p.slice_thickness,
        parametrization=p.parametrization,
        projection=p.projection,
    )
    out = _scan(potential, cfg, positions)
    diff = adf = None
    if cfg.detector.pixelated:
        first = out.pop(0)
        diff = da.asarray(first.array).astype(np.float32).reshape(
            len(positions), *first.shape[-2:])
    if cfg.detector.adf:
        adf = da.asarray(out[0].array).astype(np.float32).reshape(-1)
    ang = 1e3 * wavelength(cfg.microscope.energy) / np.diag(atoms.cell.array)[:2]
    return diff, adf, ang


def simulate_tilt(atoms: Atoms, cfg: SimulationConfig, euler: FloatArray, shift: FloatArray,
                  positions: FloatArray, seed: int, sim_device: str = "cpu",
                  ) -> tuple[NDArray | None, NDArray | None, FloatArray]:
    """:func:`lazy_tilt` computed here (dask's threaded scheduler, deterministic FFTs), on
    abTEM's ``sim_device`` (``cpu`` or ``gpu``); numpy arrays either way."""
    from simulate.compute import abtem_settings, to_numpy

    with abtem.config.set(abtem_settings(sim_device)):
        diff, adf, ang = lazy_tilt(atoms, cfg, euler, shift, positions, seed)
        diff, adf = dask.compute(diff, adf, scheduler="threads")
    return (None if diff is None else to_numpy(diff)), (None if adf is None else to_numpy(adf)), ang


def truth_potential(atoms: Atoms, cfg: SimulationConfig) -> tuple[NDArray[np.float32], FloatArray]:
    """Static potential in V on cubic voxels of ``truth.voxel_size``: ``[nz, nx, ny]`` and the
    (x, y, z) Å position of voxel [0, 0, 0] (pixel origin at 0 in x, y; slab centre in z)."""
    v = cfg.truth.voxel_size
    pot = abtem.Potential(
        atoms,
        sampling=v,
        slice_thickness=v,
        projection="finite",
        parametrization=cfg.potential.parametrization,
    )
    arr = np.asarray(pot.build().compute(progress_bar=False).array, dtype=np.float32) / v
    return arr, np.array([0.0, 0.0, v / 2])


def source_blur(data: NDArray, fwhm: float, step: float) -> NDArray:
    """Partial spatial coherence: Gaussian weighting of neighbouring scan positions.

    ``data`` is ``[T, sx, sy, ...]``; the blur acts on the scan axes with standard deviation
    ``fwhm / (2 sqrt(2 ln 2))`` Å (paper 003's incoherent source), edges reflected.
    """
    if fwhm <= 0:
        return data
    sigma = fwhm / (2 * np.sqrt(2 * np.log(2))) / step
    sig = [0.0, sigma, sigma] + [0.0] * (data.ndim - 3)
    return ndimage.gaussian_filter(data, sigma=sig, mode="reflect").astype(data.dtype)


def tilt_at_positions(
    tilt_map: NDArray, step: NDArray, positions: FloatArray, shifts: FloatArray
) -> FloatArray:
    """Sample a builder's lateral truth map ``[Mx, My, C]`` (pixel (i, j) centred at
    ``(i·sx, j·sy)`` Å, periodic) at the scan positions ``[T, P, 2]`` (Å), taken back to the
    specimen frame by removing each tilt's image shift ``[T, 2]`` (Å). Nearest pixel; returns
    ``[T, P, C]``. The specimen's lateral frame is that of zero tilt, so this is the truth of
    single-projection datasets (paper 002) and, for rotated tilts, only of the untilted map."""
    m = np.asarray(tilt_map)
    pos = positions - shifts[:, None, :]
    idx = np.rint(pos / np.asarray(step, dtype=np.float64)).astype(int) % m.shape[:2]
    return m[idx[..., 0], idx[..., 1]]


def _lazy_blur(data: da.Array, fwhm: float, step: float) -> da.Array:
    """:func:`source_blur` of each tilt of a lazy ``[T, sx, sy, ...]`` series (a tilt per
    block: the blur never mixes tilts, so this equals the blur of the whole array)."""
    if fwhm <= 0:
        return data
    whole = data.rechunk((1, *data.shape[1:]))
    return whole.map_blocks(source_blur, fwhm, step, dtype=data.dtype)


def simulate_tilt_series(atoms: Atoms, cfg: SimulationConfig, progress: bool = True) -> TiltSeries:
    """Run abTEM over all tilts, here, one tilt after another. See :class:`TiltSeries`."""
    from simulate.compute import abtem_settings

    ts = lazy_tilt_series(atoms, cfg)
    with abtem.config.set(abtem_settings()):
        for name in ("diffraction", "haadf"):
            lazy = getattr(ts, name)
            if lazy is not None:
                it = progress_bar(range(lazy.shape[0]), f"abTEM {name}", progress)
                setattr(ts, name, np.stack([lazy[j].compute(scheduler="threads") for j in it]))
    return ts


def lazy_tilt_series(atoms: Atoms, cfg: SimulationConfig) -> TiltSeries:
    """The tilt series of ``cfg`` with its measurements as dask graphs (``diffraction``
    ``[T, sx, sy, kx, ky]``, ``haadf`` ``[T, sx, sy]``; tilts × frozen-phonon configurations),
    computed by :func:`simulate.compute.store` or :func:`simulate_tilt_series`; the geometry
    and the truth are computed now."""
    cell = np.diag(atoms.cell.array)
    euler, nominal_euler, shifts = resolve_tilts(cfg.tilts)
    grid, (sx, sy) = scan_grid(cfg.scan, cell)
    rng = np.random.default_rng([cfg.scan.seed, 2])
    true_pos = grid[None] + cfg.scan.jitter * rng.standard_normal((len(euler), *grid.shape))
    diffs, adfs = [], []
    for j in range(len(euler)):
        d, a, ang = lazy_tilt(
            atoms, cfg, euler[j], shifts[j], true_pos[j], seed=cfg.phonons.seed * 100003 + j
        )
        diffs.append(None if d is None else d.reshape(sx, sy, *d.shape[1:]))
        adfs.append(None if a is None else a.reshape(sx, sy))
    fwhm, step = cfg.microscope.source_size, cfg.scan.step
    diffraction = None if diffs[0] is None else _lazy_blur(da.stack(diffs), fwhm, step)
    haadf = None if adfs[0] is None else _lazy_blur(da.stack(adfs), fwhm, step)
    potential, origin = truth_potential(atoms, cfg)
    extra = {
        k: np.asarray(v)
        for k, v in atoms.info.items()
        if k.startswith("truth_") or k == "snapshots"
    }
    if "truth_tilt_map" in extra:
        extra["truth_tilt_at_positions"] = tilt_at_positions(
            extra["truth_tilt_map"], extra["truth_tilt_map_step"], true_pos, shifts
        )
    return TiltSeries(
        diffraction=diffraction,
        haadf=haadf,
        euler_deg=euler,
        euler_nominal_deg=nominal_euler,
        shifts=shifts,
        positions=true_pos,
        positions_nominal=np.repeat(grid[None], len(euler), 0),
        angular_sampling=ang,
        reciprocal_sampling=ang * 1e-3 / wavelength(cfg.microscope.energy),
        potential=potential,
        voxel_size=cfg.truth.voxel_size,
        origin=origin,
        extra=extra,
    )
