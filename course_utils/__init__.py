"""compression-course utilities: data, models, training, metrics, plots, checks and grading.

Import the submodules you need, e.g. ``from course_utils.data import load_digits_dataset``.
"""

__version__ = "0.1.0"
