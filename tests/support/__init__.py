"""Helpers any test folder may import (`from tests.support.bao import start_bao`)."""
