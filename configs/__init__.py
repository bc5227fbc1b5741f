"""Packaged recipes: ``train/<name>.yaml`` (Stage 2) and ``stage1/<name>.yaml`` (Stage 1), chosen by name."""
