"""musicrl: evaluation."""
