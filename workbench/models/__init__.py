"""Models: the registry of what is in ``models/``, default-model provisioning, and loading."""
