"""Documents: parsing untrusted files and chunking their text."""
