"""Code the methods share; not a method itself (methods.names() lists only
modules that define METHOD): autoencoder.py (state building, applying the
networks, one optimizer step, encode/decode/sample, the MMD settings) and
pretraining.py (the WAE encoder pretraining and its config fields)."""
