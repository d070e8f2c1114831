"""One package per image; each exposes ALGORITHM (a common.algorithm.Algorithm subclass)."""
