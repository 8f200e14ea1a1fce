"""linkscan: link-based synthetic training data, training and evaluation for long-document retrievers.

The subpackages live in the repository's top-level folders (``pipeline``, ``schemas``,
``generators``, ``training``, ``evaluation``, ``flows``) and are imported as ``linkscan.<folder>``,
so an install puts one name, ``linkscan``, into site-packages. ``pyproject.toml`` maps the folders
for wheels and editable installs; a source checkout on ``PYTHONPATH`` without an install (as on the
GPU machine) finds them through the finder below.
"""
import importlib.machinery
import sys
from pathlib import Path

SUBPACKAGES = ("schemas", "pipeline", "generators", "training", "evaluation", "flows")


class CheckoutFinder:
    """Finds ``linkscan.<folder>`` in the checkout that holds this file (a meta path finder)."""

    def __init__(self, checkout: Path) -> None:
        self.checkout = str(checkout)

    def find_spec(self, fullname: str, path=None, target=None):
        package, _, folder = fullname.partition(".")
        if package != __name__ or folder not in SUBPACKAGES:
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [self.checkout])


_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "pipeline" / "__init__.py").is_file():
    # First in line: the subpackages come from the tree whose linkscan/ was imported, even where an
    # editable install maps the names to another checkout. (In a wheel the folders sit inside this one.)
    if not any(isinstance(finder, CheckoutFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, CheckoutFinder(_checkout))
