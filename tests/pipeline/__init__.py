"""Tests of mllm3d.pipeline."""
