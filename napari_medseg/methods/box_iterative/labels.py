"""Label values of the training masks every stage writes and reads."""

BACKGROUND = 0
GLOMERULUS = 1  # the object class ("foreground"); named after the paper's target
UNKNOWN = 255  # ignored by the loss: pixels whose class no cue can vouch for
