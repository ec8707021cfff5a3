"""Helpers shared by the test suite: real servers and emulators on loopback."""
