"""Helpers shared by unit and integration tests (data generators, Kafka); never imported by the library or bench/."""
