"""Stage 1: run a frozen 2D reasoning-segmentation MLLM over posed views and cache its outputs."""
