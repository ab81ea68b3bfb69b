"""Feature spaces, distances and coverage of synthetic vs real data (mix, evolve, report)."""
