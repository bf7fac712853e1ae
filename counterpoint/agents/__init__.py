"""counterpoint."""
