"""docs/images/joint_training_anatomy.png: the three kinds of training anatomy of
`train joint` (the phantom's ribbon, the gyrified cortex, fsaverage5's cerebrum), one
coronal and one axial slice each: a randomised T1 above, the labels below.
Run from the repository root: python docs/scripts/joint_anatomy_figure.py"""
import numpy as np
from skimage.io import imsave

from napari_medseg.methods.joint_lesion_tissue.synth import randomised_subject

SHAPE, SPACING = (128, 144, 128), (1.25, 1.25, 1.25)
GREYS = np.array([0, 70, 150, 235, 255], np.uint8)  # background, CSF, GM, WM, lesion (reduced labels)


def view(a):  # coronal and axial slices through the centre, superior/anterior up
    return np.concatenate([a[:, 64, :].T[::-1], np.zeros((128, 4)), a[:, :, 76].T[::-1][:, :][8:136]], 1)


def panel(kind):
    s = randomised_subject(21, SHAPE, SPACING, lesions=False, flair=False, p_stripped=0.0,
                           p_folded=1.0 if kind == "folded" else 0.0, p_surface=1.0 if kind == "surface" else 0.0)
    t1 = s["T1"] / np.percentile(s["T1"], 99.5)
    top = np.clip(view(t1) * 255, 0, 255).astype(np.uint8)
    bottom = GREYS[view(s["tissue"]).astype(int)]
    return np.concatenate([top, np.zeros((4, top.shape[1]), np.uint8), bottom], 0)


panels = [panel(k) for k in ("ribbon", "folded", "surface")]
gap = np.zeros((panels[0].shape[0], 8), np.uint8)
imsave("docs/images/joint_training_anatomy.png", np.concatenate([panels[0], gap, panels[1], gap, panels[2]], 1))
