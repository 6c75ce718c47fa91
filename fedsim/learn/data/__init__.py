"""Training data: the E2E NLG dataset, client partitions (IID, Dirichlet, length-Dirichlet) and batches."""
