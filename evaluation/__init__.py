"""Judging stylized pictures with measures no training run optimized (see independent.py)."""
