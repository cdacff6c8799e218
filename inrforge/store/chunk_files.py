"""The stored chunk (shard) files of a Zarr array: which exist, and deleting some, through zarr's
store interface (what finding and reopening a damaged shard needs)."""

from __future__ import annotations


def _stored_keys(arr) -> set[str] | None:
    """The storage keys of the chunks (shards) of the array ``arr`` that exist, relative to the array
    (``c/0/0/0``), or None when its store cannot list them."""
    prefix = arr.store_path.path.rstrip("/") + "/"

    async def keys():
        return [k async for k in arr.store_path.store.list_prefix(prefix)]

    try:
        from zarr.core.sync import sync

        return {k[len(prefix):] for k in sync(keys())}
    except Exception:
        return None


def _delete_chunks(arr, coords) -> None:
    """Delete the stored chunks (shards) of ``arr`` at chunk-grid ``coords``; a missing one is no error."""
    from zarr.core.sync import sync

    store, prefix = arr.store_path.store, arr.store_path.path.rstrip("/") + "/"
    for c in coords:
        sync(store.delete(prefix + arr.metadata.encode_chunk_key(c)))
