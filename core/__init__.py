"""Kinema core: UI-free building blocks shared by the three apps (see docs/ARCHITECTURE.md)."""
