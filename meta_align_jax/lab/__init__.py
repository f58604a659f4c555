"""Experiment tooling around the library (premise gate, ...); the core never imports it."""
