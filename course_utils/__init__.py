"""compression-course utilities: data, models, training, metrics, plots, checks and grading.

Import the submodules you need, e.g. ``from course_utils.data import load_digits_dataset``.
Importing the package inside IPython/Jupyter makes figures display as images and silences
two harmless start-up messages (see ``course_utils.jupyter``).
"""

__version__ = "0.1.0"

from . import jupyter as _jupyter

_jupyter.install()
