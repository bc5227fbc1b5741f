"""mllm-for3d: label-free 3D reasoning segmentation (MLLM-For3D)."""
