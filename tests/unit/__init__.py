"""Unit tests: pure logic only, no network, no servers."""
