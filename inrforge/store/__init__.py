"""The on-disk format (v1): a self-describing, sharded, resumable Zarr v3 group of fitted INRs.

Layout (see docs/format.md for the full description)::

    attrs   inrforge {format, version}, arch, layout, source, fit, n_objects, views,
            shard_objects, chunk_objects (all checked on opening)
    params          float32 (N, V, P)  chunks (c, V, P), shards (S, V, P); NaN = not fitted
    labels          int64 (N,) or float32 (N, K)
    metrics/psnr    float32 (N, V)     NaN = not fitted or failed
    metrics/loss    float32 (N, V)
    metrics/steps   int32   (N, V)
    metrics/failed  bool    (N, V)
    metrics/NAME            (N, V)     extra metrics a store is created with (a zoo's accuracy)
    done            bool    (N,)       chunks of S: one chunk per shard
    splits/train|val|test int64 indices
    fourier_matrix  float32 (m, in)    only for Fourier-feature archs

Objects ``[k S, (k+1) S)`` form shard ``k``: the unit of fitting and writing.  One writer fills a
shard's params, then its metrics, then its ``done`` chunk; a shard whose ``done`` chunk is unset
is refitted on resume, so a run killed at any point loses at most the shards in flight.
(A store whose labels come with its fit, a classifier zoo, also writes the shard's labels before
its ``done`` chunk.)

The package, a module a job (imports run down this list)::

    format        the format's constants; the check of a store's attributes on opening
    location      a store's place: is_store, prepare_output, leftovers of interrupted builds,
                  replace_store, remove_store
    summary       one-line summaries of INRStore.info
    chunk_files   listing and deleting an array's stored chunk files
    zarr_noise    quieting asyncio's reports about the tasks of a failed zarr read
    inr_store     INRStore (an opened store), ShardData (what one shard writes), open_store
    create        create_store
"""

from .create import create_store
from .format import ATTRIBUTES, BUILDING, FORMAT_VERSION, METRICS, MISSING
from .inr_store import INRStore, ShardData, open_store
from .location import (check_leftovers, foreign_entries, is_own_build, is_store, prepare_output,
                       refuse_foreign_entries, remove_store, replace_store)
from .summary import psnr_summary, summary_line

__all__ = ["FORMAT_VERSION", "METRICS", "MISSING", "ATTRIBUTES", "BUILDING", "ShardData", "INRStore", "open_store",
           "create_store", "is_store", "prepare_output", "check_leftovers", "is_own_build", "replace_store",
           "foreign_entries", "refuse_foreign_entries", "remove_store", "psnr_summary", "summary_line"]
