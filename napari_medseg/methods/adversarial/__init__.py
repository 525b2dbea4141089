"""Adversarial segmentation and domain transfer (Chen 2019, Giacomello 2020, Delisle 2019): issue 7."""
