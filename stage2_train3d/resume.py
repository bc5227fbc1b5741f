"""Continuing a training run: refuse to clobber an earlier run, find and read the checkpoint to resume from.

The checkpoint is read once (:func:`read_resume_point`); the config it was trained with is compared with this
run's (warnings, not errors: a user may resume with a changed learning rate on purpose) and the epoch it
ends at starts the DataModule's train sampler, so a resumed epoch draws that epoch's batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mllm3d.shared.errors import BadInputError
from mllm3d.stage2_train3d.config import TrainConfig


def previous_run_files(out_dir: str | Path) -> list[str]:
    """What in ``out_dir`` belongs to an earlier run (config.yaml, result.json, checkpoints/*.ckpt)."""
    out = Path(out_dir)
    found = [name for name in ("config.yaml", "result.json") if (out / name).is_file()]
    ckpts = out / "checkpoints"
    if ckpts.is_dir():
        found += sorted(f"checkpoints/{p.name}" for p in ckpts.glob("*.ckpt"))
    return found


def refuse_previous_run(out_dir: str | Path, resume: str | Path | None, overwrite: bool) -> None:
    """BadInputError when ``out_dir`` holds an earlier run and neither resume nor overwrite was asked for."""
    if resume or overwrite:
        return
    found = previous_run_files(out_dir)
    if found:
        raise BadInputError(
            f"{out_dir}: holds an earlier training run ({', '.join(found[:4])}{', ...' if len(found) > 4 else ''}); "
            "pass --resume last to continue it, --overwrite to replace it, or another --out"
        )


def resolve_resume(resume: str | Path | None, out_dir: Path) -> str | None:
    """None, "last" (= <out>/checkpoints/last.ckpt) or a checkpoint path; raises if it does not exist."""
    if resume is None or str(resume) == "":
        return None
    path = out_dir / "checkpoints" / "last.ckpt" if str(resume) == "last" else Path(resume)
    if not path.is_file():
        raise BadInputError(f"{path}: checkpoint to resume from not found")
    return str(path)


@dataclass(frozen=True)
class ResumePoint:
    """What a resume needs from its checkpoint: the config it was trained with and the epoch it ends at."""

    path: str
    config: Mapping[str, Any] | None  # None: a checkpoint without our hyper-parameters
    start_epoch: int  # the fit loop's processed epochs = the epoch the resumed run starts
    shapes: Mapping[str, tuple[int, ...]]  # state_dict key -> tensor shape

    def check_fits(self, module: torch.nn.Module) -> None:
        """BadInputError naming the checkpoint when its weights are not those of ``module`` (another
        architecture, stem width or embedding size): Lightning would fail with a traceback mid-restore."""
        want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        missing = sorted(set(want) - set(self.shapes))
        unexpected = sorted(set(self.shapes) - set(want))
        wrong = sorted(k for k in set(want) & set(self.shapes) if want[k] != self.shapes[k])
        if not (missing or unexpected or wrong):
            return
        first = (f"{wrong[0]} is {list(self.shapes[wrong[0]])} there, {list(want[wrong[0]])} here" if wrong
                 else f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}")
        raise BadInputError(
            f"{self.path}: its weights do not fit this run's network ({len(missing)} missing, {len(unexpected)} "
            f"unexpected, {len(wrong)} of another shape; {first}): resume with the config it was trained with, "
            "or start again with --overwrite"
        )

    def check_epochs(self, epochs: int) -> None:
        """BadInputError when the checkpoint has already trained more epochs than this run asks for
        (Lightning refuses such a restore with a traceback after the run has started)."""
        if self.start_epoch > epochs:
            raise BadInputError(
                f"{self.path}: already trained {self.start_epoch} epochs, more than this run's "
                f"optim.epochs={epochs}; resume with optim.epochs >= {self.start_epoch}"
            )

    def config_differences(self, cfg: TrainConfig) -> list[str]:
        """A warning for every config value that differs between the checkpoint and this run."""
        if self.config is None:
            return [f"warning: {self.path} holds no config; cannot compare it with this run's"]
        old, new = _flat(self.config), _flat(cfg.to_dict())
        return [
            f"warning: resuming {self.path} with {k}={new.get(k)!r} (the checkpoint was trained with {old.get(k)!r})"
            for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)
        ]


def read_resume_point(ckpt_path: str | Path) -> ResumePoint:
    """Read a Lightning checkpoint once (memory-mapped); a one-line BadInputError if it is not one."""
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:  # truncated, garbage, not a torch file: torch raises many types
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise BadInputError(
            f"{ckpt_path}: not a readable checkpoint (truncated or not a Lightning .ckpt: {type(exc).__name__}: "
            f"{first}); resume from another checkpoint"
        ) from exc
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt:
        raise BadInputError(f"{ckpt_path}: not a Lightning checkpoint (no state_dict); resume from another checkpoint")
    saved = (ckpt.get("hyper_parameters") or {}).get("config")
    try:
        epoch = int(ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        try:
            epoch = int(ckpt.get("epoch", -1)) + 1
        except (TypeError, ValueError):
            raise BadInputError(
                f"{ckpt_path}: not a Lightning checkpoint (its epoch is {ckpt.get('epoch')!r}, not a number); "
                "resume from another checkpoint"
            ) from None
    state = ckpt["state_dict"] if isinstance(ckpt["state_dict"], Mapping) else {}
    shapes = {str(k): tuple(getattr(v, "shape", ())) for k, v in state.items()}
    return ResumePoint(str(ckpt_path), saved if isinstance(saved, Mapping) else None, epoch, shapes)


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, Mapping) else {f"{prefix}{k}": v})
    return out
