"""Sub-volume sampling for the joint training: one patch per dataset and iteration,
uniform for tissue (controls), centred on the dilated lesions for lesion scans."""

from __future__ import annotations


import numpy as np
import torch

class PatchSampler:
    """Random sub-volumes: uniform (tissue data) or centred in dilated lesions (lesion data).

    Crops are numpy slices of the subjects' arrays, stacked (modalities + label), padded
    to the patch size where a volume is smaller, and flipped at random along every axis.
    MONAI's croppers would first copy each whole volume into a tensor; slicing does not.
    """

    def __init__(self, subjects, modalities, label_key, patch, rng, *, weighted, flip=True,
                 dilation=3, label_set=None):
        from scipy.ndimage import binary_dilation

        self.subjects, self.keys = subjects, (*modalities, label_key)
        self.patch, self.rng, self.flip = tuple(int(p) for p in patch), rng, flip
        self.centres: list[np.ndarray | None] = []  # flat indices inside the dilated lesions
        for s in subjects if weighted else ():
            lab = np.asarray(s[label_key])
            les = lab > 0 if label_key == "lesion" else lab == label_set.lesion
            if les.any() and dilation > 0:
                les = binary_dilation(les, iterations=int(dilation))
            self.centres.append(np.flatnonzero(les) if les.any() else None)  # no lesion: uniform

    def sample(self) -> np.ndarray:
        i = int(self.rng.integers(len(self.subjects)))
        s, rng = self.subjects[i], self.rng
        shape = np.shape(s[self.keys[0]])
        idx = self.centres[i] if self.centres else None
        if idx is not None:  # centre on a lesion voxel, shifted so the window stays inside
            c = np.unravel_index(int(rng.choice(idx)), shape)
            start = [min(max(ci - p // 2, 0), max(n - p, 0)) for ci, p, n in zip(c, self.patch, shape)]
        else:
            start = [int(rng.integers(0, max(n - p, 0) + 1)) for p, n in zip(self.patch, shape)]
        sl = tuple(slice(st, st + p) for st, p in zip(start, self.patch))
        out = np.stack([np.asarray(s[k][sl], np.float32) for k in self.keys])
        out = np.pad(out, [(0, 0)] + [(0, p - n) for p, n in zip(self.patch, out.shape[1:])])
        if self.flip:
            axes = [a + 1 for a in range(out.ndim - 1) if rng.random() < 0.5]
            out = np.flip(out, axes) if axes else out
        return np.ascontiguousarray(out)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = np.stack([self.sample() for _ in range(n)])
        return torch.from_numpy(b[:, :-1]), torch.from_numpy(np.rint(b[:, -1:])).long()
