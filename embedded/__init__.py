"""The embedded Colorflow stack on one machine: start, stop and drive it (`python -m embedded --help`)."""
