"""Exercise specs, one module per chapter: ``chNN.py`` defines ``EXERCISES``."""
