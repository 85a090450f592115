"""Third-party-style plugins used by the tests through patched entry points."""
