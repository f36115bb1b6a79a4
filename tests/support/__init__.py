"""Helpers shared by unit and integration tests (data generators); never imported by the library or bench/."""
