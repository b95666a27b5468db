"""Atomic model builders, registered by name.

Every builder takes its own dataclass schema and returns ASE ``Atoms`` centred in its cell.
Species are the atomic numbers; builders may add per-atom arrays (``atoms.arrays``) such as
``region`` (0 = core, 1 = shell) and truth extras in ``atoms.info`` under keys starting with
``truth_`` (numpy arrays, stored in the dataset's ``truth/`` group). A builder that provides an
ensemble (MD snapshots) puts ``atoms.info["snapshots"]`` = ``[S, N, 3]`` positions in Å; each
snapshot is then one frozen-phonon configuration of the simulation. A lateral truth map
``truth_tilt_map`` ``[Mx, My, 2]`` (mrad) with its pixel ``truth_tilt_map_step`` ``[2]`` (Å) is
also sampled at the true scan positions (``truth_tilt_at_positions``). The phantoms of papers
000, 002, 003 and 004 are described in docs/phantoms.md.
"""

from simulate.models import amorphous as _amorphous  # noqa: F401  (registers builders)
from simulate.models import coreshell as _coreshell  # noqa: F401
from simulate.models import decahedron as _decahedron  # noqa: F401
from simulate.models import grain_boundary as _grain_boundary  # noqa: F401
from simulate.models import nanoparticles as _nanoparticles  # noqa: F401  (registers builders)
from simulate.models import slabs as _slabs  # noqa: F401
from simulate.models.registry import MODELS, SampleConfig, build_model, register_model, schema_for

__all__ = ["MODELS", "SampleConfig", "build_model", "register_model", "schema_for"]
