"""Small CLI commands of the pack itself."""
