"""Curation: raw SFT files -> validated, deduplicated, audited, split and versioned dataset card."""

from tunesmith.curate import bias, contamination, dedup, pii, split, token_stats, validate  # noqa: F401  (register stages)
