"""The run directory: layout, atomic tensor/JSON writes, and refusing to clobber what is not a run.

```
RUN/
  run.json            config, dataset, model spec, seed, versions, device, status, result
  metrics.jsonl       one line per epoch
  snapshots/epoch-NNN.safetensors   conv weights (epoch 000 = initialisation)
  probes/epoch-NNN.safetensors      conv outputs for the fixed probe images; probes/inputs.safetensors
  model.safetensors   final weights;  checkpoint/state.pt  resumable state
```
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from convlens._atomic import atomic_path, write_json, write_text
from convlens.errors import ConvlensError

RUN_FILE = "run.json"


class RunDir:
    """Paths and atomic writers for one run directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def run_json(self) -> Path:
        return self.root / RUN_FILE

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def model(self) -> Path:
        return self.root / "model.safetensors"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint" / "state.pt"

    def snapshot(self, epoch: int) -> Path:
        return self.root / "snapshots" / f"epoch-{epoch:03d}.safetensors"

    def probe(self, epoch: int) -> Path:
        return self.root / "probes" / f"epoch-{epoch:03d}.safetensors"

    @property
    def probe_inputs(self) -> Path:
        return self.root / "probes" / "inputs.safetensors"

    def is_run(self) -> bool:
        return self.run_json.is_file()

    def read_run(self) -> dict[str, Any]:
        try:
            data = json.loads(self.run_json.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConvlensError(
                f"{str(self.root)!r} is not a run directory (no run.json)"
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConvlensError(f"{str(self.run_json)!r} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConvlensError(f"{str(self.run_json)!r} does not hold a JSON object")
        return data

    def write_run(self, data: dict[str, Any]) -> None:
        write_json(self.run_json, data)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.is_file():
            return []
        lines = self.metrics.read_text(encoding="utf-8").splitlines()
        try:
            return [json.loads(line) for line in lines if line.strip()]
        except json.JSONDecodeError as exc:
            raise ConvlensError(f"{str(self.metrics)!r} has an invalid line: {exc}") from None

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        write_text(self.metrics, "".join(json.dumps(r) + "\n" for r in rows))

    def save_tensors(
        self, path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str] | None = None
    ) -> None:
        from safetensors.torch import save_file

        clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        with atomic_path(path) as tmp:
            save_file(clean, str(tmp), metadata=meta)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        # serialise in memory first: one write of the finished bytes is cheaper than torch.save's
        # many small writes to a file
        buf = io.BytesIO()
        torch.save(state, buf)
        with atomic_path(self.checkpoint) as tmp:
            tmp.write_bytes(buf.getbuffer())

    def load_checkpoint(self) -> dict[str, Any]:
        if not self.checkpoint.is_file():
            raise ConvlensError(f"{str(self.root)!r} has no checkpoint to resume from")
        try:
            state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for corrupt files
            raise ConvlensError(f"cannot load checkpoint {str(self.checkpoint)!r}: {exc}") from None
        if not isinstance(state, dict):
            raise ConvlensError(f"checkpoint {str(self.checkpoint)!r} does not hold a state dict")
        return state

    def prepare_new(self, force: bool) -> None:
        """Create the folder for a new run; refuse an existing non-empty folder unless ``force``."""
        if self.root.exists() and not self.root.is_dir():
            raise ConvlensError(
                f"run directory {str(self.root)!r} exists and is not a folder",
                hint_key="not_a_folder",
            )
        if self.root.is_dir() and any(self.root.iterdir()):
            if not force:
                if self.is_run():
                    raise ConvlensError(
                        f"{str(self.root)!r} already holds a previous run; resume it, choose "
                        "another directory or overwrite it",
                        hint_key="run_exists",
                    )
                raise ConvlensError(
                    f"{str(self.root)!r} exists, is not empty and is not a run; choose another "
                    "directory or overwrite it",
                    hint_key="folder_not_empty",
                )
            if self.is_run():
                for sub in ("snapshots", "probes", "checkpoint", "figures"):
                    shutil.rmtree(self.root / sub, ignore_errors=True)
                for f in (
                    "metrics.jsonl",
                    "model.safetensors",
                    "analysis.json",
                    "report.html",
                    RUN_FILE,
                ):
                    (self.root / f).unlink(missing_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
