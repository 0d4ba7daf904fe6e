"""Admin of the provider side."""
