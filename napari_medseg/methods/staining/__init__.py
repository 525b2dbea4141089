"""Digital H&E staining of confocal microscopy (Combalia et al. 2019): speckle, despeckling, Gareau staining.

Started under issue 5: the speckle model, the despeckling network and Gareau's digital
stain are here; the CycleGAN, the whole-slide pipeline, the widget and the shipped
models are not yet.
"""
