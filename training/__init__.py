"""accelerate entry points: DDPM training, the evaluation encoder and the flare predictor."""
