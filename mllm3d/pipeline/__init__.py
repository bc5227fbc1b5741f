"""The pipeline layer: what uses both stages (demo, predict from text, evaluation, benchmark, inspect, view).

Stage 1 and Stage 2 never import each other; they meet in the pseudo-label store, and only this layer
(and the CLI above it) drives both.
"""
