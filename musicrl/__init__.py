"""musicrl: musicrl."""
