"""Published numbers, one CSV per paper (format: README.md here), shipped as package data."""
