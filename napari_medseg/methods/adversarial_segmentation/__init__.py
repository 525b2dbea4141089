"""Adversarial segmentation with weak domain transfer across MR sequences (Chen et al. 2019)."""
