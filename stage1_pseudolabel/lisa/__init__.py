"""The ``lisa`` Stage-1 backend: LISA (LLaVA v1 + SAM + [SEG] bridge) on transformers and segment_anything.

Public entry points: :func:`mllm3d.stage1_pseudolabel.lisa.backend.build` (registered as ``lisa``),
:class:`~mllm3d.stage1_pseudolabel.lisa.config.LisaConfig`, :func:`~mllm3d.stage1_pseudolabel.lisa.checkpoint.load_lisa`. Tests build tiny random-weight checkpoints
in the released layout with ``tests/lisa_tiny.py``.
See docs/lisa.md.
"""
