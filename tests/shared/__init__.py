"""Tests of mllm3d.shared."""
