"""`card diff|validate` moved to tunesmith/card_diff.py (so card commands start without the curate stages)."""

from tunesmith.card_diff import CARD_FILE, card_dir, config_changes, diff_cards, format_diff, verify_card

__all__ = ["CARD_FILE", "card_dir", "config_changes", "diff_cards", "format_diff", "verify_card"]
