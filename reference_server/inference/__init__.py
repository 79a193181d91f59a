"""Inference: loading models, serving them through engines, and the tasks run on them. No HTTP here."""
