"""The tiny served model fixtures (``tiny_model_dir``, ``served_url``) live in tests/conftest.py."""
