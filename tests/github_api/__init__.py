"""A local GitHub REST API for the tests, validated against GitHub's published description."""
