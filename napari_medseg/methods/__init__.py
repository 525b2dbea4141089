"""Qt-free method packages, one per paper (plus ``tissue``, the engine's reference model)."""
