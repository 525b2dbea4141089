"""Adversarial training parts shared by methods: the alternating trainer, GAN losses, the
optional adversarial term of supervised trainers, segmentation metrics and shared networks."""
