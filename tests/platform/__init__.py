"""Tests of damond.platform against the live kernel (real processes, real /proc and sysfs)."""
