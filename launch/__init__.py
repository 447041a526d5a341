"""Launching the big-WAE sweep: expansion, engines that dispatch runs, collection.

`python -m launch.sweep` runs a sweep, `python -m launch.status` counts its
runs, `python -m launch.collect` gathers the results into a table and plots.
"""
