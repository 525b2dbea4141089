"""Digital H&E staining of confocal microscopy (Combalia et al. 2019).

- :mod:`.speckle`, :mod:`.despeckle`, :mod:`.training`, :mod:`.augment`: the speckle
  model, the despeckling network and its training (the paper's recipe and the real-image
  recipe);
- :mod:`.despeckling`: despeckling on its own, any single-channel image, tiled;
- :mod:`.gareau`, :mod:`.cyclegan`, :mod:`.cyclegan_training`: Gareau's digital stain and
  the CycleGAN towards real H&E;
- :mod:`.pipeline`: FCM + RCM → despeckle → Gareau → CycleGAN over whole slides;
- :mod:`.hne`, :mod:`.confocal`: the bundled real H&E images and confocal-like pairs
  derived from them; :mod:`.models`, :mod:`.card`: training jobs and model cards.

The widget is :mod:`napari_medseg.widgets.staining`; the shipped models are
``despeckle`` and ``stain_cyclegan`` in ``models/``.
"""
