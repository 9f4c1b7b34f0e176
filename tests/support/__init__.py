"""Helpers shared by test modules: servers, scripted τ² participants (never imported from a test_*.py)."""
