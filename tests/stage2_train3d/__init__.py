"""Tests of mllm3d.stage2_train3d."""
