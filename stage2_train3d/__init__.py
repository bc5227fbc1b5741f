"""Stage 2: fuse cached 2D pseudo-labels onto the point cloud and train an spconv 3D network."""
