"""tunesmith: curate an SFT dataset into a versioned card, train on it, evaluate and report."""

__version__ = "0.1.0"
