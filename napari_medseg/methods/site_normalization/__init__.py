"""Adversarial normalization across imaging sites (Delisle et al. 2019)."""
