"""Fast feed-forward style networks: the network, its training run and options, data, and adding a style."""
