"""mllm-for3d: label-free 3D reasoning segmentation (MLLM-For3D).

The front door (``mllm3d.pipeline.api``), loaded on first use so that ``import mllm3d`` stays instant:

- ``open_source(spec)`` scenes (synthetic, ScanNet, ScanNet++, Matterport3D, mesh folders)
- ``open_store(path)`` the pseudo-label store, the only contract between the stages
- ``pseudolabel(config, ...)`` Stage 1; ``train(store, out, config)`` Stage 2
- ``load_predictor(run)``, ``load_backend(name, ...)``, ``predict(predictor, backend, scene, text)``

The layers below it: ``mllm3d.shared`` <- ``mllm3d.stage1_pseudolabel`` | ``mllm3d.stage2_train3d``
<- ``mllm3d.pipeline`` <- ``mllm3d.cli`` (checked by scripts/check_layers.py).
"""

from __future__ import annotations

from typing import Any

__all__ = ["open_source", "open_store", "pseudolabel", "train", "load_predictor", "load_backend", "predict"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mllm3d.pipeline import api

        return getattr(api, name)
    raise AttributeError(f"module 'mllm3d' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
