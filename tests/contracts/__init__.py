"""Behaviour suites every implementation of an interface must pass, run by unit tests (in-process
stores) and integration tests (real servers) alike: subclass the suite, provide its fixtures."""
