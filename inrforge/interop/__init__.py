"""Conversion to and from the DWSNets / neural-graphs dataset form.

That form is one PyTorch state dict (``.pth``) per INR, with ``seq.{i}.weight`` (out, in) and
``seq.{i}.bias`` (out,), and a splits JSON ``{"train"|"val"|"test": {"path": [...], "label":
[...]}}``.  The labels may instead be a ``label`` key in each state dict.  Importing makes a
one-view store.  Its PSNR is NaN ("unknown"): the targets are not part of that form.

Three conventions differ from inrforge's and are converted both ways (docs/format.md, "DWSNets
import and export"):

* coordinates: DWSNets' ``make_coordinates`` feeds ``(x, y) = (column, row)``; inrforge feeds
  ``(row, column)``.  For INRs of 2-D coordinates the two input columns of the first layer's
  weight are swapped on import and on export (``W0[:, [1, 0]]``), an exact change of variables;
* labels: DWSNets writes class ids as strings (``"2"``); labels that are all integers become
  int64 class ids, other numbers float32 regression targets;
* an export's ``splits.json`` also records the ``arch``, the labels' dtype, the coordinate grid
  and, for Fourier-feature archs, the ``fourier_matrix``, which an import uses.

The package, a module a job (imports run down this list)::

    state_dict    reading one .pth file: its state dict, its MLP layers, arch_from_state, the
                  flat parameters
    coordinates   DWSNets' (x, y) = (column, row) order: the swap of a 2-D INR's inputs
    labels        labels checked and made into an int64 or float32 array
    splits_file   reading a splits.json: splits, paths, labels, and an export's arch and grid
    export_files  what an export-dws folder holds; telling one from a folder of anything else
    staging       parent folders made and removed on failure; hidden staging folders, those of
                  killed processes deleted
    importing     import_dws
    exporting     export_dws, exportable
"""

from .exporting import export_dws, exportable
from .importing import import_dws
from .state_dict import arch_from_state

__all__ = ["import_dws", "export_dws", "exportable", "arch_from_state"]
