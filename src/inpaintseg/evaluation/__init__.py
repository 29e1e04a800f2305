"""Scoring predictions: metrics (`metrics`: counts, Dice/IoU, AUCs, thresholds, the image score), the
`evaluate` command's library (`evaluate`) and the HTML report (`report`)."""
