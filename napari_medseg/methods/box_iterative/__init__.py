"""Iterative training from bounding boxes (Gupta et al. 2019): Stage 0/1/2 on whole slides."""
