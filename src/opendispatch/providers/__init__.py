"""Channel providers behind one interface: the sandbox (the default simulator), real ones later."""
