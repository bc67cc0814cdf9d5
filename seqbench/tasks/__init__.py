"""Built-in tasks; each registered through the seqbench.tasks entry points."""
