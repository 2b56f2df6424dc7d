"""Fast feed-forward style networks: networks, loss network, losses, data and trainer."""
