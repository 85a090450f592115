"""The neutral core every layer builds on; it imports nothing else of the project."""
