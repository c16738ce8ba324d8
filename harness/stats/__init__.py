"""Statistics over per-model values: intervals and ranks (SPEC section 4)."""
