"""Phantoms several methods draw on: the brain phantom's anatomy and rendering from label maps."""
