"""The simulated listener panel (docs/PANEL.md): listeners with hidden, noisy tastes over what the
evaluation judges and plain signal features hear, who vote on pairs offline (``compare``) or through a
running app's public API like people (``arena_client``). Every vote they cast is marked simulated;
no training reward and no reward model is ever among what they hear."""

from musicrl.panel.hearing import FEATURES, Hearing, stated_attributes
from musicrl.panel.listeners import (
    CHOICES,
    Calibration,
    Listener,
    PanelConfig,
    calibrate,
    choice_probabilities,
    expected_agreement,
    make_listeners,
    measured_agreement,
)

__all__ = ["CHOICES", "FEATURES", "Calibration", "Hearing", "Listener", "PanelConfig", "calibrate",
           "choice_probabilities", "expected_agreement", "make_listeners", "measured_agreement",
           "stated_attributes"]
