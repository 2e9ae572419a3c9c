"""Colorflow's command line: `colorflow --help` lists what people run by hand."""
