"""Training data files: SFT rows in data/train.jsonl and data/test.jsonl."""
