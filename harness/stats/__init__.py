"""Statistics over per-model values: intervals and ranks (docs/measures.md)."""
