"""The Keras reference every artifact is judged against, saved next to the artifacts byte-for-byte reproducibly."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["save_reference"]


def save_reference(model, path: Path) -> None:
    """Save the Keras reference as ``.keras``, byte-for-byte the same for the same model.

    Keras writes three things that change from run to run although the model does not: ``date_saved`` in
    metadata.json, the zip entries' timestamps, and ``shared_object_id`` in config.json, which is Python's ``id()`` of
    shared objects (only compared for equality when loading). They become: no date, 1980-01-01 for every entry, and
    0, 1, 2, ... in order of first appearance. Loading is unaffected (tested)."""
    import json
    import zipfile

    model.save(path)
    with zipfile.ZipFile(path) as z:
        entries = [(i, z.read(i.filename)) for i in z.infolist()]
    ids: dict = {}

    def renumber(node):
        if isinstance(node, dict):
            return {k: (ids.setdefault(v, len(ids)) if k == "shared_object_id" else renumber(v))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [renumber(v) for v in node]
        return node

    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as out:
        for info, data in entries:
            if info.filename == "metadata.json":
                meta = json.loads(data)
                meta.pop("date_saved", None)
                data = json.dumps(meta).encode()
            elif info.filename == "config.json":
                data = json.dumps(renumber(json.loads(data))).encode()
            out.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)), data,
                         compress_type=info.compress_type)
    os.replace(tmp, path)
