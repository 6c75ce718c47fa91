"""Split-federated training: clients, main server and federated server, layer-wise aggregation, cut moves."""
