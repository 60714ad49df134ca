"""Revision files, one per schema change, oldest ``0001_initial``."""
