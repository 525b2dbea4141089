"""SegAN-style adversarial segmentation and cross-modality transfer (Giacomello et al. 2020)."""
