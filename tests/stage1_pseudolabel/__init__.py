"""Tests of mllm3d.stage1_pseudolabel."""
