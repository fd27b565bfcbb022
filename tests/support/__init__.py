"""Test scaffolding shared by tests, slow tests and benchmarks."""
