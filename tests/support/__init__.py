"""Helpers the tests share. Import them from here: a conftest holds fixtures, and no test module imports another."""
