"""The data directory the adapter tests serve from: a store, and random PEFT adapters of the
real default generator written beside it, ready to register (`register_adapter`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reference_server.inference.loading import default_specs, load_model
from reference_server.storage import DataLayout, Store
from reference_server.training.random_adapters import write_random_adapter
from tests.constants import GENERATOR


def data_with_adapters(workdir: Path, count: int, **adapter: Any) -> tuple[DataLayout, Store, list[Path]]:
    """`workdir/data` with its store, and `count` adapters (`workdir/a0`, `a1`, ..., seeds 0, 1,
    ...; `adapter` as `write_random_adapter` takes it) of the float32 base."""
    layout = DataLayout(workdir / "data")
    layout.create()
    spec = next(s for s in default_specs() if s.id == GENERATOR)
    spec.dtype = "float32"
    base = load_model(spec, cache_dir=Path("~/.cache/maas").expanduser(), device="cpu")
    folders = [write_random_adapter(base.model, workdir / f"a{i}", seed=i, **adapter) for i in range(count)]
    del base
    return layout, Store(layout.db_path), folders
