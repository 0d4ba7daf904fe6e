"""Models of corrections."""
