"""The joint label set: tissue classes and one lesion class, with names and colours.

The paper's joint output has the tissue classes of the control dataset plus the lesion
class of the patient dataset. The full set follows the issue (the phantom's anatomy);
the reduced set is what the MNI152 grey/white-matter maps can score.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...core.errors import InputError


@dataclass(frozen=True)
class LabelSet:
    names: tuple[str, ...]  # index = label value; 0 is background
    colours: tuple[str, ...]

    @property
    def lesion(self) -> int:
        """The lesion class is always the last one."""
        return len(self.names) - 1

    @property
    def tissues(self) -> tuple[int, ...]:
        """Tissue classes: everything but background and lesion."""
        return tuple(range(1, self.lesion))

    @property
    def n_classes(self) -> int:
        return len(self.names)

    def check(self, labels, what: str = "label image") -> None:
        """One clear error for values outside this set (nothing is changed)."""
        import numpy as np

        values = np.unique(np.asarray(labels))
        bad = [int(v) for v in values if v < 0 or v >= self.n_classes or v != int(v)]
        if bad:
            raise InputError(f"The {what} has values {bad[:10]} outside 0..{self.n_classes - 1} "
                             f"({', '.join(self.names)}).")


FULL = LabelSet(
    names=("background", "CSF", "grey matter", "white matter", "deep grey matter", "cerebellum", "brainstem", "lesion"),
    colours=("transparent", "#3b82f6", "#9ca3af", "#f5f5f4", "#a855f7", "#22c55e", "#f59e0b", "#ef4444"),
)
REDUCED = LabelSet(
    names=("background", "CSF", "grey matter", "white matter", "lesion"),
    colours=("transparent", "#3b82f6", "#9ca3af", "#f5f5f4", "#ef4444"),
)
LABEL_SETS = {"full": FULL, "reduced": REDUCED}
