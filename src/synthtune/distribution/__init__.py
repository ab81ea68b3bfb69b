"""Feature spaces, distances and coverage of synthetic vs real data (shared by mix, evolve, report)."""
