"""The patient page in the real headless Chromium (a package, so its conftest is its own)."""
