"""``python -m napari_medseg ...`` is the ``napari-medseg`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
