"""Training patches drawn lazily across whole slides, two with objects to one at random.

The paper (after Gadermayr et al. 2019) keeps a 2:1 ratio of patches that contain a
glomerulus to patches taken anywhere on the slide. Patches are sliced out of the
slide's array (numpy, dask or zarr), so a gigapixel slide is never read whole.
Augmentation uses MONAI: flips, 90-degree rotations, and a per-channel colour jitter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .labels import UNKNOWN
from .model import to_input


@dataclass
class TrainingSlide:
    """One slide of a stage: its image, its current training labels and what anchors patches.

    ``objects`` (N, 4) are the [y0, x0, y1, x1] rectangles object patches centre on: the
    boxes in Stage 1, ground-truth objects in Stage 0, kept objects in Stage 2.
    ``fixed`` is ``(mask, labels)`` of the user's corrections, or None.
    """

    image: object
    name: str = "slide"
    boxes: np.ndarray | None = None
    labels: object = None
    objects: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    fixed: tuple | None = None
    instances: object = None  # true instance ids (Stage 0), or None: objects then come from ``objects``

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.image.shape[:2])


def _read(array, y0: int, x0: int, size: int, fill) -> np.ndarray:
    """``array[y0:y0+size, x0:x0+size]`` as numpy, padded with ``fill`` past the border."""
    h, w = array.shape[:2]
    ys, xs = slice(max(y0, 0), min(y0 + size, h)), slice(max(x0, 0), min(x0 + size, w))
    block = array[ys, xs]
    block = np.asarray(block.compute() if hasattr(block, "compute") else block)
    out = np.full((size, size) + block.shape[2:], fill, dtype=block.dtype)
    out[ys.start - y0: ys.stop - y0, xs.start - x0: xs.stop - x0] = block
    return out


def _augment():
    from monai.transforms import Compose, RandFlipd, RandRotate90d, RandScaleIntensityd, RandShiftIntensityd

    keys = ["image", "label", "weight"]
    return Compose([
        RandFlipd(keys, prob=0.5, spatial_axis=0),
        RandFlipd(keys, prob=0.5, spatial_axis=1),
        RandRotate90d(keys, prob=0.75, max_k=3),
        RandScaleIntensityd("image", factors=0.08, prob=0.8, channel_wise=True),
        RandShiftIntensityd("image", offsets=0.04, prob=0.8),
    ])


def _plain(t) -> torch.Tensor:
    """A MONAI MetaTensor (or array) as a plain tensor."""
    return t.as_tensor() if hasattr(t, "as_tensor") else torch.as_tensor(t)


class PatchSampler:
    """``batch(n)`` -> (x (n, 3, p, p) float in [0,1], y (n, 2, p, p): labels, weights).

    With ``boundary`` the labels are the three-class target (:func:`.instances.boundary_target`),
    boundary pixels weighing ``BOUNDARY_WEIGHT`` more."""

    def __init__(self, slides: list[TrainingSlide], patch: int, *, object_ratio=(2, 1), fixed_weight: float = 5.0,
                 seed: int = 0, augment: bool = True, boundary: bool = False):
        if not slides:
            raise ValueError("no training slides")
        self.slides, self.patch = slides, int(patch)
        self.p_object = object_ratio[0] / float(sum(object_ratio))
        self.fixed_weight = float(fixed_weight)
        self.boundary = bool(boundary)
        self.rng = np.random.default_rng(seed)
        self.transform = _augment() if augment else None
        if self.transform is not None:
            self.transform.set_random_state(seed=seed)
        areas = np.array([s.shape[0] * s.shape[1] for s in slides], np.float64)
        self.p_area = areas / areas.sum()
        self.n_objects = np.array([len(s.objects) for s in slides], np.float64)
        self.drawn = {"object": 0, "random": 0}

    def _origin(self) -> tuple[int, int, int]:
        rng, p = self.rng, self.patch
        if self.n_objects.sum() > 0 and rng.random() < self.p_object:
            k = int(rng.choice(len(self.slides), p=self.n_objects / self.n_objects.sum()))
            y0, x0, y1, x1 = self.slides[k].objects[rng.integers(len(self.slides[k].objects))]
            # the object's centre lands anywhere in the middle half of the patch
            cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
            oy, ox = rng.uniform(0.25, 0.75, 2) * p
            self.drawn["object"] += 1
            return k, int(round(cy - oy)), int(round(cx - ox))
        k = int(rng.choice(len(self.slides), p=self.p_area))
        h, w = self.slides[k].shape
        self.drawn["random"] += 1
        return k, int(rng.integers(0, max(h - p, 0) + 1)), int(rng.integers(0, max(w - p, 0) + 1))

    def _target(self, s: TrainingSlide, labels, y0: int, x0: int) -> np.ndarray:
        """The three-class target of a label patch read one pixel wider on every side."""
        from .instances import BOUNDARY, OUTER_RIM, boundary_target, rim

        if s.instances is not None:  # true instances: the boundary between ids is known
            inst = _read(s.instances, y0 - 1, x0 - 1, self.patch + 2, 0).astype(np.int64)
            edge = rim(np.where(labels == UNKNOWN, 0, inst), (labels == 0) & OUTER_RIM)
            return np.where(edge & (labels == 1), BOUNDARY, labels).astype(np.uint8)[1:-1, 1:-1]
        boxes = np.asarray(s.objects, np.int64).reshape(-1, 4) - [y0 - 1, x0 - 1, y0 - 1, x0 - 1]
        p = self.patch + 2
        near = (boxes[:, 0] < p) & (boxes[:, 2] > 0) & (boxes[:, 1] < p) & (boxes[:, 3] > 0)
        return boundary_target(labels, boxes[near])[1:-1, 1:-1]

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        k, y0, x0 = self._origin()
        s, p = self.slides[k], self.patch
        image = _read(s.image, y0, x0, p, 255)[..., :3]
        if self.boundary:  # one pixel of context: the rim at the patch edge is drawn right
            labels = _read(s.labels, y0 - 1, x0 - 1, p + 2, UNKNOWN)
        else:
            labels = _read(s.labels, y0, x0, p, UNKNOWN)
        weight = np.ones((p, p), np.float32)
        if s.fixed is not None:
            mask = _read(s.fixed[0], y0, x0, p, 0).astype(bool)
            fixed_labels = _read(s.fixed[1], y0, x0, p, 0)
            if self.boundary:
                labels[1:-1, 1:-1] = np.where(mask, fixed_labels, labels[1:-1, 1:-1])
            else:
                labels = np.where(mask, fixed_labels, labels)
            weight[mask] = self.fixed_weight
        if self.boundary:
            from .instances import BOUNDARY
            from .model import BOUNDARY_WEIGHT

            labels = self._target(s, labels, y0, x0)
            weight[labels == BOUNDARY] *= BOUNDARY_WEIGHT
        item = {"image": to_input(image), "label": torch.from_numpy(labels.astype(np.float32))[None],
                "weight": torch.from_numpy(weight)[None]}
        if self.transform is not None:
            item = self.transform(item)
        x = _plain(item["image"]).float().clamp(0, 1)
        y = torch.cat([_plain(item["label"]), _plain(item["weight"])]).float()
        return x, y

    def _random_states(self) -> list:
        """The sampler's random streams: its own generator's, and every ``RandomState`` of the
        MONAI augmentations (nested transforms included), in a fixed order."""
        found, seen = [], set()

        def walk(obj, depth=0):
            if depth > 4 or id(obj) in seen:
                return
            seen.add(id(obj))
            if isinstance(obj, np.random.RandomState):
                found.append(obj)
            elif isinstance(obj, (list, tuple)):
                for v in obj:
                    walk(v, depth + 1)
            elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("monai"):
                for v in vars(obj).values():
                    walk(v, depth + 1)

        walk(self.transform)
        return found

    def get_state(self) -> dict:
        """Every random stream of the sampler, as JSON-able data (for a training run's ``last.pt``)."""
        return {"rng": self.rng.bit_generator.state,
                "augment": [[int(st[2]), int(st[3]), float(st[4]), st[1].tolist()]
                            for st in (r.get_state() for r in self._random_states())]}

    def set_state(self, state: dict) -> None:
        """The streams :meth:`get_state` gave: the patches and augmentations drawn next are the same."""
        self.rng.bit_generator.state = state["rng"]
        streams = self._random_states()
        if len(streams) != len(state["augment"]):
            raise ValueError("the saved sampler state is of another augmentation pipeline")
        for r, (pos, has_gauss, cached, keys) in zip(streams, state["augment"]):
            r.set_state(("MT19937", np.array(keys, dtype=np.uint32), pos, has_gauss, cached))

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = zip(*(self.sample() for _ in range(n)))
        return torch.stack(xs).contiguous(), torch.stack(ys).contiguous()

