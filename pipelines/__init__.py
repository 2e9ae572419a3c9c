"""Colorflow pipeline stages, importable and testable without Airflow."""
