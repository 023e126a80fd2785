"""Data layer placeholder."""
from tf_latentflow.data import music, ptb  # noqa: F401
