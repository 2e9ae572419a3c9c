"""The colorization model: networks, losses, data, training and colorizing."""
