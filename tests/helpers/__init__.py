"""Helpers any test folder may import (`from tests.helpers.bao import start_bao`)."""
