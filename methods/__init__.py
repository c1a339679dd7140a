"""Method adapters: one module per method (see ``bench.adapters.MethodAdapter``)."""
