"""Code shared by both stages: geometry, scene readers, the pseudo-label store schema, metrics."""
