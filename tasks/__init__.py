"""Cognitive tasks as key-seeded, jittable batch generators."""
