"""Reading mneme 1.0 checkpoint archives.

mneme 1.0's ``dumps`` wrote a tar.gz holding ``manifest.json`` (format version,
embedder fingerprint and dim, store backend, vector dtype, ...) and ``store``, a
snapshot of its SQLite cache file. Restoring one checks the manifest against the
embedder, copies the snapshot next to the destination, migrates it to this package's
schema there and only then moves it into place: the archive is only read, and a
failure leaves no file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tarfile
from typing import Any

from mneme._errors import (
    CheckpointError,
    EmbedderDimensionError,
    EmbedderMismatchError,
    MnemeError,
)
from mneme.stores.sqlite import SQLiteStore

__all__ = ["FORMAT_VERSION", "is_v1_archive", "read_manifest", "restore_v1_archive"]

FORMAT_VERSION = 1
"""The newest 1.0 checkpoint format this package reads."""

_GZIP_MAGIC = b"\x1f\x8b"


def is_v1_archive(source: str) -> bool:
    """Whether ``source`` is a gzip file (a 1.0 checkpoint) rather than a JSON-lines
    dump: decided by its first bytes, whatever its name."""
    try:
        with open(source, "rb") as f:
            return f.read(2) == _GZIP_MAGIC
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {source!r}: {exc}") from exc


def read_manifest(archive: tarfile.TarFile, source: str) -> dict[str, Any]:
    try:
        member = archive.extractfile("manifest.json")
        if member is None:
            raise KeyError("manifest.json")
        manifest = json.loads(member.read())
    except KeyError as exc:
        raise CheckpointError(
            f"{source!r} has no manifest.json: it is not a mneme 1.0 checkpoint"
        ) from exc
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"the manifest of checkpoint {source!r} is unreadable: {exc}"
        ) from exc
    if not isinstance(manifest, dict):
        raise CheckpointError(f"the manifest of checkpoint {source!r} is not a JSON object")
    return manifest


def _check_manifest(manifest: dict[str, Any], source: str, fingerprint: str, dim: int) -> None:
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"checkpoint {source!r} has no format_version in its manifest")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {source!r} has format version {version}, newer than this mneme reads "
            f"({FORMAT_VERSION}); upgrade mneme to load it"
        )
    backend = manifest.get("store_backend", "sqlite")
    if backend != "sqlite":
        raise CheckpointError(
            f"checkpoint {source!r} holds a {backend!r} store; only SQLite checkpoints exist"
        )
    stored_fp, stored_dim = manifest.get("embedder_fingerprint"), manifest.get("embedder_dim")
    if stored_fp != fingerprint:
        raise EmbedderMismatchError(
            f"checkpoint {source!r} was written with embedder {stored_fp!r}, not "
            f"{fingerprint!r}; load it with that embedder, then reembed it with "
            "mneme.tools.migrate.reembed"
        )
    if stored_dim != dim:
        raise EmbedderDimensionError(
            f"checkpoint {source!r} holds vectors of dim {stored_dim}, the embedder makes "
            f"dim {dim}; load it with its own embedder, then reembed"
        )


def restore_v1_archive(source: str, path: str, fingerprint: str, dim: int) -> dict[str, Any]:
    """Restore the 1.0 checkpoint ``source`` as a new SQLite cache file at ``path``
    (which must not exist yet); returns the manifest."""
    source, path = os.fspath(source), os.fspath(path)
    if os.path.exists(path) and os.path.getsize(path) > 0:
        raise CheckpointError(
            f"{path} already exists; loading a 1.0 checkpoint writes a new cache file, so "
            "pass a path that does not exist (to merge into an existing cache, use "
            f"python -m mneme.tools.migrate copy {source} --to {path})"
        )
    partial = f"{path}.restoring"
    try:
        with tarfile.open(source, "r:gz") as archive:
            manifest = read_manifest(archive, source)
            _check_manifest(manifest, source, fingerprint, dim)
            _extract_store(archive, source, partial)
        _migrate_snapshot(partial, source, fingerprint, dim)
        _move(partial, path)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise CheckpointError(
            f"cannot read checkpoint {source!r}: {exc}; it is truncated or not a mneme "
            "1.0 checkpoint (tar.gz)"
        ) from exc
    finally:
        for leftover in (partial, f"{partial}-wal", f"{partial}-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
    return manifest


def _move(partial: str, path: str) -> None:
    try:
        os.replace(partial, path)
    except OSError as exc:
        raise CheckpointError(f"cannot put the restored cache at {path}: {exc}") from exc


def _extract_store(archive: tarfile.TarFile, source: str, dest: str) -> None:
    # Only the one member is read, into a file we name: nothing in the archive decides
    # where anything is written.
    try:
        member = archive.getmember("store")
    except KeyError as exc:
        raise CheckpointError(
            f"checkpoint {source!r} has no store snapshot: it is not a mneme 1.0 checkpoint"
        ) from exc
    data = archive.extractfile(member) if member.isfile() else None
    if data is None:
        raise CheckpointError(f"the store snapshot in checkpoint {source!r} is not a file")
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise CheckpointError(f"cannot write the restored cache at {dest}: {exc}") from exc
    with open(fd, "wb") as out:
        shutil.copyfileobj(data, out)  # a read error here is the archive's


def _migrate_snapshot(snapshot: str, source: str, fingerprint: str, dim: int) -> None:
    """Open the snapshot as a cache: SQLite checks it, and it is migrated forward."""
    store = SQLiteStore(snapshot)
    try:
        store.open(fingerprint, dim)
        store.integrity_check()
    except (EmbedderMismatchError, EmbedderDimensionError):
        raise
    except MnemeError as exc:
        raise CheckpointError(
            f"the store snapshot in checkpoint {source!r} is not a usable cache: {exc}"
        ) from exc
    finally:
        store.close()
