"""Torch modules and the one inference path of musicrl (imports none of app, musicrl, evaluation)."""
