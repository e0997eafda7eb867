"""kestrel-bench: the load generator (kestrel/load_generator.pxi) and its command line."""
