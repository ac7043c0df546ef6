"""musicrl: app."""
