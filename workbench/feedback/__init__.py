"""Preferences: A/B votes in data/feedback.jsonl and their merge into data/dataset_rlhf.jsonl."""
