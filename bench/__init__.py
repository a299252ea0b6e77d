"""Benchmarks of sonic-registry against the tools users would pick instead.

Every ratio in the report compares two commands timed in the same run, on the
same files, interleaved (A B C A B C ...), so that background noise hits all of
them alike. ``python -m bench --help`` lists the options; BENCHMARKS.md holds the
latest full run.
"""
