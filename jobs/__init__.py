"""The background queue: Huey instances built from settings, one task per job kind, the generic
runner, the worker processes with their heartbeats, and the reaper of runs whose worker died."""
