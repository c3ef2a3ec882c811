"""Models orthoscope builds itself: planted pairs with known answers (and, later, trained ones)."""

from orthoscope.lab.planted import build_planted_pair, plant_consistent

__all__ = ["build_planted_pair", "plant_consistent"]
