"""Built-in model families; each registered through the seqbench.models entry points."""
